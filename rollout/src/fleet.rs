//! Hosts and their ring for a release.
//!
//! A host's ring is a deterministic function of its id, its attributes and the release: hosts are
//! ordered by (vendor-internal first, low criticality before high, region in the plan's order, then
//! `SHA-256(release, host id)`), and the rings take that order in slices of the plan's percentages.
//! The hash makes cohorts stable (the same host is in the same ring if the controller restarts) and
//! representative (a different random-looking slice of each tier for every release, so the same hosts
//! are not always the canaries).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::plan::RolloutPlan;

pub use rulebox_controlplane_proto::Criticality;

/// A host as the rollout controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// The host's stable id.
    pub id: String,
    /// A host of the vendor's own fleet (dogfooding): these go first.
    pub vendor_internal: bool,
    /// How critical the host is.
    pub criticality: Criticality,
    /// Its region.
    pub region: String,
}

/// The 64-bit ring hash of `host_id` for `release`: the first 8 bytes of
/// `SHA-256("rulebox-ring-v1\0" || release as 8 little-endian bytes || host_id)`.
pub fn ring_hash(host_id: &str, release: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(b"rulebox-ring-v1\0");
    h.update(release.to_le_bytes());
    h.update(host_id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The ring index of every host of `hosts` (same order) for `plan`. Ring `i` holds the hosts at
/// positions `[ceil(p_{i-1} n / 100), ceil(p_i n / 100))` of the ordering described in the module
/// docs, so the first ring is never empty for a non-empty fleet.
pub fn assign_rings(plan: &RolloutPlan, hosts: &[HostInfo]) -> Vec<usize> {
    let region_rank = |region: &str| {
        plan.region_order
            .iter()
            .position(|r| r == region)
            .unwrap_or(plan.region_order.len())
    };
    let mut order: Vec<(bool, Criticality, usize, u64, usize)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            (
                !h.vendor_internal,
                h.criticality,
                region_rank(&h.region),
                ring_hash(&h.id, plan.release),
                i,
            )
        })
        .collect();
    order.sort_unstable();
    let n = hosts.len();
    let bounds: Vec<usize> = plan
        .rings
        .iter()
        .map(|r| {
            let exact = r.percent / 100.0 * n as f64;
            // `exact` is in [0, n]; the conversion saturates and the `min` keeps it in range.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a non-negative value at most n, rounded up"
            )]
            let count = exact.ceil() as usize;
            count.clamp(1, n)
        })
        .collect();
    let mut rings = vec![plan.rings.len().saturating_sub(1); n];
    for (position, &(_, _, _, _, host)) in order.iter().enumerate() {
        if let Some(ring) = bounds.iter().position(|&b| position < b) {
            rings[host] = ring;
        }
    }
    rings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<HostInfo> {
        (0..n)
            .map(|i| HostInfo {
                id: format!("host-{i:05}"),
                vendor_internal: i % 200 == 0,
                criticality: match i % 10 {
                    0..=5 => Criticality::Low,
                    6..=8 => Criticality::Medium,
                    _ => Criticality::High,
                },
                region: ["eu", "us", "ap"][i % 3].to_owned(),
            })
            .collect()
    }

    #[test]
    fn rings_have_the_planned_sizes_and_are_deterministic() {
        let hosts = fleet(2000);
        let plan = RolloutPlan::standard(42, Some(41));
        let rings = assign_rings(&plan, &hosts);
        let count = |r| rings.iter().filter(|&&x| x == r).count();
        assert_eq!(
            (count(0), count(1), count(2), count(3)),
            (20, 180, 800, 1000)
        );
        assert_eq!(rings, assign_rings(&plan, &hosts));
        // Another release draws other hosts within the same tiers.
        let other = assign_rings(&RolloutPlan::standard(43, Some(42)), &hosts);
        assert_ne!(rings, other);
    }

    #[test]
    fn internal_hosts_go_first_and_high_criticality_last() {
        let hosts = fleet(2000);
        let rings = assign_rings(&RolloutPlan::standard(42, Some(41)), &hosts);
        for (h, r) in hosts.iter().zip(&rings) {
            if h.vendor_internal {
                assert_eq!(*r, 0, "{}", h.id);
            }
            if h.criticality == Criticality::High && !h.vendor_internal {
                assert_eq!(*r, 3, "{}", h.id);
            }
        }
    }

    #[test]
    fn regions_go_one_at_a_time_when_ordered() {
        let hosts = fleet(3000);
        let mut plan = RolloutPlan::standard(42, Some(41));
        plan.region_order = vec!["ap".into(), "eu".into(), "us".into()];
        let rings = assign_rings(&plan, &hosts);
        // The 10% ring (after the internal hosts) is all low-criticality hosts of the first region.
        for (h, r) in hosts.iter().zip(&rings) {
            if *r == 1 && !h.vendor_internal {
                assert_eq!(h.region, "ap", "{}", h.id);
                assert_eq!(h.criticality, Criticality::Low);
            }
        }
    }
}
