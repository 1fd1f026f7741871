//! What happens to each connection, decided at accept time from the seed and the connection
//! number alone (a SplitMix64 stream per connection), so the same seed gives the same refusals,
//! cut points and delays however the connections interleave.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A direction bytes travel through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → upstream: the request (a cut lands mid-request-body).
    Up,
    /// Upstream → client: the response (a cut lands mid-response).
    Down,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// Which direction `--direction` lets cuts happen in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutDirection {
    Up,
    Down,
    /// Up or down, drawn per connection.
    Both,
}

impl FromStr for CutDirection {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "up" => Ok(CutDirection::Up),
            "down" => Ok(CutDirection::Down),
            "both" => Ok(CutDirection::Both),
            _ => Err(ParseError::Direction(s.to_owned())),
        }
    }
}

/// An inclusive range `MIN..MAX` (or a single `N`, meaning `N..N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    min: u64,
    max: u64,
}

impl Span {
    pub fn new(min: u64, max: u64) -> Result<Span, ParseError> {
        if min > max {
            return Err(ParseError::Reversed { min, max });
        }
        Ok(Span { min, max })
    }

    pub fn min(self) -> u64 {
        self.min
    }

    pub fn max(self) -> u64 {
        self.max
    }

    pub fn contains(self, n: u64) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

impl FromStr for Span {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let number = |part: &str| {
            part.trim()
                .parse::<u64>()
                .map_err(|_| ParseError::Span(s.to_owned()))
        };
        match s.split_once("..") {
            Some((min, max)) => Span::new(number(min)?, number(max)?),
            None => {
                let n = number(s)?;
                Span::new(n, n)
            }
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.min, self.max)
    }
}

/// A probability in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Probability(f64);

impl Probability {
    pub const NEVER: Probability = Probability(0.0);
    pub const ALWAYS: Probability = Probability(1.0);

    pub fn new(p: f64) -> Result<Probability, ParseError> {
        if (0.0..=1.0).contains(&p) {
            Ok(Probability(p))
        } else {
            Err(ParseError::Probability(p.to_string()))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for Probability {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let p = s
            .trim()
            .parse::<f64>()
            .map_err(|_| ParseError::Probability(s.to_owned()))?;
        Probability::new(p).map_err(|_| ParseError::Probability(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("`{0}` is not a range: write MIN..MAX or N (non-negative integers)")]
    Span(String),
    #[error("range {min}..{max} is reversed: MIN must be ≤ MAX")]
    Reversed { min: u64, max: u64 },
    #[error("`{0}` is not a probability: write a number from 0 to 1")]
    Probability(String),
    #[error("`{0}` is not a direction: write up, down or both")]
    Direction(String),
}

/// The fault settings: what may happen to a connection, and the seed that decides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    pub seed: u64,
    pub cut_probability: Probability,
    /// Bytes forwarded in the cut direction before the cut.
    pub cut_after: Span,
    pub direction: CutDirection,
    /// Latency added before each forwarded chunk, in milliseconds.
    pub delay_ms: Span,
    pub refuse_probability: Probability,
}

impl Default for Faults {
    /// A transparent proxy: no refusals, no cuts, no delay.
    fn default() -> Faults {
        Faults {
            seed: 0,
            cut_probability: Probability::NEVER,
            cut_after: Span { min: 0, max: 0 },
            direction: CutDirection::Both,
            delay_ms: Span { min: 0, max: 0 },
            refuse_probability: Probability::NEVER,
        }
    }
}

/// A planned cut: close both sides abruptly once `after` bytes went through in `direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub direction: Direction,
    pub after: u64,
}

/// What happens to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Close the connection as soon as it is accepted (reset, upstream never contacted).
    pub refuse: bool,
    pub cut: Option<Cut>,
    /// Seeds of the per-chunk delay draws in each direction.
    pub(crate) delay_seeds: [u64; 2],
}

impl Plan {
    /// The same connection with faults switched off (delays stay: latency is not a fault).
    pub fn without_faults(self) -> Plan {
        Plan {
            refuse: false,
            cut: None,
            ..self
        }
    }

    /// The cut point in `direction`, if this plan cuts there.
    pub fn cut_in(&self, direction: Direction) -> Option<u64> {
        self.cut
            .filter(|cut| cut.direction == direction)
            .map(|cut| cut.after)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.refuse, self.cut) {
            (true, _) => f.write_str("refuse"),
            (false, Some(cut)) => write!(f, "cut {} after {} bytes", cut.direction, cut.after),
            (false, None) => f.write_str("pass"),
        }
    }
}

impl Faults {
    /// The plan of connection number `conn`. Every draw is made whatever the probabilities, in a
    /// fixed order, so changing one setting does not reshuffle the others.
    pub fn plan(&self, conn: u64) -> Plan {
        let mut rng = Rng::new(self.seed ^ mix(conn ^ 0x6A09_E667_F3BC_C909));
        let refuse = rng.chance(self.refuse_probability);
        let cut = rng.chance(self.cut_probability);
        let direction = match self.direction {
            CutDirection::Up => Direction::Up,
            CutDirection::Down => Direction::Down,
            CutDirection::Both if rng.next_u64() & 1 == 0 => Direction::Up,
            CutDirection::Both => Direction::Down,
        };
        let after = rng.in_span(self.cut_after);
        let delay_seeds = [rng.next_u64(), rng.next_u64()];
        Plan {
            refuse,
            cut: cut.then_some(Cut { direction, after }),
            delay_seeds,
        }
    }

    /// The delays of one direction of a connection, one per forwarded chunk.
    pub(crate) fn delays(&self, plan: &Plan, direction: Direction) -> Delays {
        let seed = match direction {
            Direction::Up => plan.delay_seeds[0],
            Direction::Down => plan.delay_seeds[1],
        };
        Delays {
            rng: Rng::new(seed),
            span: self.delay_ms,
        }
    }
}

pub(crate) struct Delays {
    rng: Rng,
    span: Span,
}

impl Delays {
    pub(crate) fn next(&mut self) -> Option<Duration> {
        if self.span.max == 0 {
            return None;
        }
        Some(Duration::from_millis(self.rng.in_span(self.span)))
    }
}

/// SplitMix64: tiny, fast, and good enough to spread cut points.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// True with probability `p` (exactly never for 0, always for 1).
    fn chance(&mut self, p: Probability) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p.get()
    }

    fn in_span(&mut self, span: Span) -> u64 {
        let width = u128::from(span.max - span.min) + 1;
        let offset = u128::from(self.next_u64()) % width;
        span.min + u64::try_from(offset).expect("offset < width ≤ 2^64")
    }
}

/// The SplitMix64 finalizer: a bijection that scatters nearby inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse() {
        assert_eq!("1000..2000".parse(), Span::new(1000, 2000));
        assert_eq!("7".parse(), Span::new(7, 7));
        assert_eq!(
            "2..1".parse::<Span>(),
            Err(ParseError::Reversed { min: 2, max: 1 })
        );
        assert!("a..2".parse::<Span>().is_err());
        assert!("-1..2".parse::<Span>().is_err());
        assert_eq!(
            "0..18446744073709551615".parse::<Span>().map(Span::max),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn probabilities_parse() {
        assert_eq!(
            "0.25".parse::<Probability>().map(Probability::get),
            Ok(0.25)
        );
        assert!("1.5".parse::<Probability>().is_err());
        assert!("-0.1".parse::<Probability>().is_err());
        assert!("NaN".parse::<Probability>().is_err());
    }

    #[test]
    fn plans_follow_the_seed_and_stay_in_range() {
        let faults = Faults {
            seed: 42,
            cut_probability: Probability::new(0.5).expect("valid"),
            cut_after: Span::new(1000, 2000).expect("valid"),
            direction: CutDirection::Both,
            ..Faults::default()
        };
        let plans: Vec<Plan> = (1..=200).map(|conn| faults.plan(conn)).collect();
        let again: Vec<Plan> = (1..=200).map(|conn| faults.plan(conn)).collect();
        assert_eq!(plans, again);
        let other: Vec<Plan> = (1..=200)
            .map(|conn| Faults { seed: 43, ..faults }.plan(conn))
            .collect();
        assert_ne!(plans, other);

        let cuts: Vec<Cut> = plans.iter().filter_map(|plan| plan.cut).collect();
        assert!(
            (60..=140).contains(&cuts.len()),
            "{} cuts of 200",
            cuts.len()
        );
        assert!(cuts.iter().all(|cut| faults.cut_after.contains(cut.after)));
        assert!(cuts.iter().any(|cut| cut.direction == Direction::Up));
        assert!(cuts.iter().any(|cut| cut.direction == Direction::Down));
        assert!(plans.iter().all(|plan| !plan.refuse));
    }

    #[test]
    fn certain_and_impossible_faults() {
        let always = Faults {
            cut_probability: Probability::ALWAYS,
            refuse_probability: Probability::ALWAYS,
            cut_after: Span::new(5, 5).expect("valid"),
            direction: CutDirection::Down,
            ..Faults::default()
        };
        for conn in 1..100 {
            let plan = always.plan(conn);
            assert!(plan.refuse);
            assert_eq!(
                plan.cut,
                Some(Cut {
                    direction: Direction::Down,
                    after: 5
                })
            );
            assert_eq!(plan.without_faults().cut, None);
            assert!(!plan.without_faults().refuse);
            assert_eq!(Faults::default().plan(conn).to_string(), "pass");
        }
    }
}
