//! The fleet's agreed health view. Every agent probes every backend; left
//! alone, hosts flip a failing backend at different moments (their checks
//! are jittered and the failure is seen from different places), and for
//! that window they build different tables, so a flow moving between LB
//! hosts can meet a different backend. With `health.fleet_view`, an agent
//! uses the majority of the live agents' own probe results (its own
//! included); a tie keeps its own verdict, and with nobody else to ask it
//! uses its own alone.

/// (up, why) for one backend from this agent's probe and its peers'.
pub fn agree(local: bool, peers: &[bool]) -> (bool, String) {
    let total = peers.len() + 1;
    let down = peers.iter().filter(|up| !**up).count() + usize::from(!local);
    let up = match (down * 2).cmp(&total) {
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Equal => local,
    };
    (
        up,
        format!("fleet view: {down} of {total} agents see it down"),
    )
}

#[cfg(test)]
mod tests {
    use super::agree;

    #[test]
    fn the_majority_decides_and_a_tie_keeps_the_local_verdict() {
        assert!(!agree(true, &[false, false]).0, "two of three down");
        assert!(agree(false, &[true, true]).0, "one of three down");
        assert!(
            agree(true, &[false]).0 && !agree(false, &[true]).0,
            "a tie is local"
        );
        assert!(!agree(false, &[]).0 && agree(true, &[]).0, "alone: local");
        assert_eq!(
            agree(true, &[false, false]).1,
            "fleet view: 2 of 3 agents see it down"
        );
    }
}
