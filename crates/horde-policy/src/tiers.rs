//! Trust tiers T0–T4 and how an agent moves between them: pure state, no I/O.
//!
//! A tier bounds what an agent may even ask for; the manifest and Cedar decide the rest. An agent
//! is promoted one tier after a streak of compliant tasks (never above the rule's ceiling) and
//! demoted on a violation (one tier, or straight to the floor). Every change is returned as a
//! [`TierChange`] for the caller to record as an event; nothing here changes a tier silently.
//!
//! Invariants: a promotion never goes above `PromotionRule::ceiling` and never skips a tier; a
//! demotion never raises a tier (an agent already at or below the floor stays where it is); a
//! rule that cannot promote (`tasks_per_promotion == 0`, or a ceiling below the floor) never
//! promotes — an unusable rule fails towards less trust.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How far an agent is trusted. Ordered: `T0 < T1 < … < T4`.
///
/// - **T0** — read-only: may read files the manifest allows; no writes, no commands, no network.
/// - **T1** — T0, plus writing inside its own worktree and running allow-listed commands.
/// - **T2** — T1, plus network access to allowed hosts; other hosts are asked (a person decides).
/// - **T3** — T2, plus push / deploy-like operations (publishing, pushing branches, releases),
///   each with a person's approval.
/// - **T4** — T3, plus it may *request* dangerous operations (history rewrites, deleting
///   remote resources, credential changes); a request is still an approval, never automatic.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Tier {
    #[default]
    T0,
    T1,
    T2,
    T3,
    T4,
}

/// What a tier may do at most; the manifest narrows it further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Read files the manifest allows.
    Read,
    /// Write files inside the agent's own worktree.
    WriteWorktree,
    /// Run commands on the manifest's allow-list.
    RunAllowListed,
    /// Reach hosts the manifest allows.
    NetworkAllowed,
    /// Ask a person to reach a host the manifest does not list.
    NetworkAsk,
    /// Push, publish or deploy, with a person's approval.
    PushDeployWithApproval,
    /// Request a dangerous operation (always through an approval).
    RequestDangerous,
}

impl Capability {
    /// The lowest tier that has this capability.
    pub fn min_tier(self) -> Tier {
        match self {
            Capability::Read => Tier::T0,
            Capability::WriteWorktree | Capability::RunAllowListed => Tier::T1,
            Capability::NetworkAllowed | Capability::NetworkAsk => Tier::T2,
            Capability::PushDeployWithApproval => Tier::T3,
            Capability::RequestDangerous => Tier::T4,
        }
    }
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 5] = [Tier::T0, Tier::T1, Tier::T2, Tier::T3, Tier::T4];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::T0 => "T0",
            Tier::T1 => "T1",
            Tier::T2 => "T2",
            Tier::T3 => "T3",
            Tier::T4 => "T4",
        }
    }

    /// 0 for T0 … 4 for T4.
    pub fn level(self) -> u8 {
        self as u8
    }

    /// Whether this tier has `capability` (the manifest may still deny it).
    pub fn allows(self, capability: Capability) -> bool {
        self >= capability.min_tier()
    }

    /// One line saying what the tier may do, for prompts and `horde policy check`.
    pub fn describe(self) -> &'static str {
        match self {
            Tier::T0 => "read-only",
            Tier::T1 => "write in its worktree, run allow-listed commands",
            Tier::T2 => "T1 + network to allowed hosts, asks for other hosts",
            Tier::T3 => "T2 + push/deploy-like operations with approval",
            Tier::T4 => "T3 + may request dangerous operations (always approved by a person)",
        }
    }

    /// The next tier up, or `None` at T4.
    pub fn up(self) -> Option<Tier> {
        Tier::ALL.get(usize::from(self.level()) + 1).copied()
    }

    /// The next tier down, or `None` at T0.
    pub fn down(self) -> Option<Tier> {
        usize::from(self.level())
            .checked_sub(1)
            .and_then(|i| Tier::ALL.get(i).copied())
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("unknown trust tier {0:?}: expected one of T0, T1, T2, T3, T4")]
    Unknown(String),
    #[error("promotion rule: tasks_per_promotion must be at least 1 (0 would never promote)")]
    ZeroTasks,
    #[error("promotion rule: floor {floor} is above ceiling {ceiling}")]
    FloorAboveCeiling { floor: Tier, ceiling: Tier },
}

impl FromStr for Tier {
    type Err = TierError;

    /// Accepts `T0`…`T4` (also lower-case `t2`), surrounding spaces ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Tier::ALL
            .into_iter()
            .find(|tier| tier.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| TierError::Unknown(s.to_owned()))
    }
}

/// How far a violation demotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Demotion {
    /// Down one tier (not below the floor).
    #[default]
    OneStep,
    /// Straight to the floor.
    ToFloor,
}

/// When an agent moves between tiers. Deserialised from a manifest; missing keys take the
/// defaults (5 compliant tasks per promotion, ceiling T2, floor T0, one step down).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromotionRule {
    /// Consecutive compliant tasks that earn one tier.
    pub tasks_per_promotion: u32,
    /// Promotion never goes above this tier.
    pub ceiling: Tier,
    /// Demotion never goes below this tier.
    pub floor: Tier,
    pub demotion: Demotion,
}

/// Default streak for a promotion: long enough that one lucky task does not earn trust.
pub const DEFAULT_TASKS_PER_PROMOTION: u32 = 5;

impl Default for PromotionRule {
    fn default() -> Self {
        PromotionRule {
            tasks_per_promotion: DEFAULT_TASKS_PER_PROMOTION,
            ceiling: Tier::T2,
            floor: Tier::T0,
            demotion: Demotion::OneStep,
        }
    }
}

impl PromotionRule {
    /// Checks the rule as a manifest loader should before using it.
    pub fn validate(&self) -> Result<(), TierError> {
        if self.tasks_per_promotion == 0 {
            return Err(TierError::ZeroTasks);
        }
        if self.floor > self.ceiling {
            return Err(TierError::FloorAboveCeiling {
                floor: self.floor,
                ceiling: self.ceiling,
            });
        }
        Ok(())
    }
}

/// How a task ended, as far as trust is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum TaskOutcome {
    /// Finished within policy: counts towards promotion.
    Compliant,
    /// Broke a rule (denied action attempted, procedure skipped …): demotes, resets the streak.
    Violation { reason: String },
    /// Did not finish, but broke nothing: neither counts nor resets the streak.
    Incomplete,
}

/// A tier change for the caller to record as an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    pub from: Tier,
    pub to: Tier,
    pub reason: String,
}

impl TierChange {
    pub fn is_promotion(&self) -> bool {
        self.to > self.from
    }
}

/// An agent's standing: its tier and the counters that move it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustState {
    pub tier: Tier,
    /// Compliant tasks since the last promotion or violation.
    pub compliant_tasks: u32,
    /// Every task recorded, whatever its outcome.
    pub total_tasks: u64,
    /// Violations over the agent's life.
    pub violations: u64,
}

impl TrustState {
    pub fn new(tier: Tier) -> Self {
        TrustState {
            tier,
            compliant_tasks: 0,
            total_tasks: 0,
            violations: 0,
        }
    }

    /// Records one finished task; returns the tier change it caused, if any.
    pub fn record_task(
        &mut self,
        outcome: TaskOutcome,
        rule: &PromotionRule,
    ) -> Option<TierChange> {
        self.total_tasks = self.total_tasks.saturating_add(1);
        match outcome {
            TaskOutcome::Incomplete => None,
            TaskOutcome::Compliant => {
                self.compliant_tasks = self.compliant_tasks.saturating_add(1);
                // An unusable rule never promotes: failing towards less trust.
                if rule.validate().is_err() || self.compliant_tasks < rule.tasks_per_promotion {
                    return None;
                }
                let to = self.tier.up().filter(|up| *up <= rule.ceiling)?;
                let change = TierChange {
                    from: self.tier,
                    to,
                    reason: format!(
                        "promoted after {} consecutive compliant tasks",
                        self.compliant_tasks
                    ),
                };
                self.tier = to;
                self.compliant_tasks = 0;
                Some(change)
            }
            TaskOutcome::Violation { reason } => {
                self.compliant_tasks = 0;
                self.violations = self.violations.saturating_add(1);
                let target = match rule.demotion {
                    Demotion::OneStep => self.tier.down().unwrap_or(Tier::T0).max(rule.floor),
                    Demotion::ToFloor => rule.floor,
                };
                // Never raise a tier on a violation (an agent below the floor stays there).
                let to = target.min(self.tier);
                if to == self.tier {
                    return None;
                }
                let change = TierChange {
                    from: self.tier,
                    to,
                    reason: format!("demoted on a violation: {reason}"),
                };
                self.tier = to;
                Some(change)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_order_and_neighbours() {
        assert!(Tier::T0 < Tier::T4);
        assert_eq!(Tier::T0.down(), None);
        assert_eq!(Tier::T4.up(), None);
        assert_eq!(Tier::T2.up(), Some(Tier::T3));
        assert_eq!(Tier::T2.down(), Some(Tier::T1));
    }

    #[test]
    fn capabilities_grow_with_tier() {
        assert!(Tier::T0.allows(Capability::Read));
        assert!(!Tier::T0.allows(Capability::WriteWorktree));
        assert!(Tier::T1.allows(Capability::RunAllowListed));
        assert!(!Tier::T1.allows(Capability::NetworkAllowed));
        assert!(!Tier::T3.allows(Capability::RequestDangerous));
        assert!(Tier::T4.allows(Capability::RequestDangerous));
    }

    #[test]
    fn parse_rejects_unknown_naming_it() {
        let err = "T5".parse::<Tier>().err();
        assert_eq!(err, Some(TierError::Unknown("T5".into())));
        assert!(err.is_some_and(|e| e.to_string().contains("\"T5\"")));
        assert_eq!(" t3 ".parse::<Tier>(), Ok(Tier::T3));
    }
}
