//! Minimal pcap writer (classic format, Ethernet link type) so a failing
//! fixture can be opened in Wireshark or tcpdump.

use std::{fs::File, io::Write as _, path::Path};

pub fn write(path: &Path, frames: &[&[u8]]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    // magic, version 2.4, thiszone, sigfigs, snaplen, linktype 1 (Ethernet)
    f.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    f.write_all(&2u16.to_le_bytes())?;
    f.write_all(&4u16.to_le_bytes())?;
    f.write_all(&0i32.to_le_bytes())?;
    f.write_all(&0u32.to_le_bytes())?;
    f.write_all(&65535u32.to_le_bytes())?;
    f.write_all(&1u32.to_le_bytes())?;
    for (i, frame) in frames.iter().enumerate() {
        f.write_all(&(i as u32).to_le_bytes())?; // ts_sec: frame order
        f.write_all(&0u32.to_le_bytes())?;
        f.write_all(&(frame.len() as u32).to_le_bytes())?;
        f.write_all(&(frame.len() as u32).to_le_bytes())?;
        f.write_all(frame)?;
    }
    Ok(())
}
