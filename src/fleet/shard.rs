//! Shards: the K-th of N disjoint, covering slices of a fleet's device index space.

use super::FleetError;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// Environment variable holding the 0-based shard index (set by a Kubernetes Indexed Job).
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Environment variable holding the number of shards when `--shard auto` is used.
pub const COUNT_ENV: &str = "VPHONE_SHARD_COUNT";

/// One slice of a fleet: shard `number` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    number: u64,
    count: u64,
}

impl Shard {
    /// The whole fleet as one shard.
    pub const WHOLE: Shard = Shard {
        number: 1,
        count: 1,
    };

    /// Shard `number` (1-based) of `count`.
    pub fn new(number: u64, count: u64) -> Result<Shard, FleetError> {
        if count == 0 || number == 0 || number > count {
            return Err(FleetError::Usage(format!(
                "shard {number}/{count} does not exist: write K/N with 1 <= K <= N \
                 (e.g. 1/4 for the first of four shards)"
            )));
        }
        Ok(Shard { number, count })
    }

    /// The shard named by `JOB_COMPLETION_INDEX` (0-based) and `VPHONE_SHARD_COUNT`, read
    /// through `env` so tests need not touch the process environment.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Shard, FleetError> {
        let read = |name: &str| -> Result<u64, FleetError> {
            let value = env(name).ok_or_else(|| {
                FleetError::Usage(format!(
                    "--shard auto needs {INDEX_ENV} (0-based, set by a Kubernetes Indexed Job) \
                     and {COUNT_ENV} (the number of shards); {name} is not set"
                ))
            })?;
            value
                .trim()
                .parse()
                .map_err(|_| FleetError::Usage(format!("{name}={value:?} is not a whole number")))
        };
        let index = read(INDEX_ENV)?;
        let count = read(COUNT_ENV)?;
        if index >= count {
            return Err(FleetError::Usage(format!(
                "--shard auto: {INDEX_ENV}={index} is 0-based, so it must be below \
                 {COUNT_ENV}={count}; set the Job's completions to {COUNT_ENV}"
            )));
        }
        Shard::new(index + 1, count)
    }

    /// 1-based shard number.
    pub fn number(self) -> u64 {
        self.number
    }

    /// Number of shards.
    pub fn count(self) -> u64 {
        self.count
    }

    /// This shard's device indices out of `devices`: shards are disjoint, cover `0..devices`
    /// and differ in size by at most one.
    pub fn slice(self, devices: u64) -> Range<u64> {
        let at = |k: u64| ((k as u128 * devices as u128) / self.count as u128) as u64;
        at(self.number - 1)..at(self.number)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.number, self.count)
    }
}

impl FromStr for Shard {
    type Err = FleetError;

    /// `K/N` (1-based K), or `auto` to read the environment.
    fn from_str(s: &str) -> Result<Shard, FleetError> {
        if s == "auto" {
            return Shard::from_env(|name| std::env::var(name).ok());
        }
        let parsed = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((k, n)) => Shard::new(k, n),
            None => Err(FleetError::Usage(format!(
                "--shard {s:?}: write K/N (e.g. 2/4) or auto"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_cover_the_fleet_and_are_balanced() {
        for devices in [0u64, 1, 7, 100, 1001] {
            for count in 1..=9 {
                let mut next = 0;
                for k in 1..=count {
                    let r = Shard::new(k, count).unwrap().slice(devices);
                    assert_eq!(r.start, next, "gap or overlap at {k}/{count} of {devices}");
                    assert!(r.end - r.start <= devices / count + 1);
                    next = r.end;
                }
                assert_eq!(next, devices);
            }
        }
    }

    #[test]
    fn auto_reads_the_zero_based_job_completion_index() {
        let env = |name: &str| match name {
            INDEX_ENV => Some("0".to_owned()),
            COUNT_ENV => Some("4".to_owned()),
            _ => None,
        };
        assert_eq!(Shard::from_env(env).unwrap(), Shard::new(1, 4).unwrap());
        let missing = Shard::from_env(|_| None).unwrap_err().to_string();
        assert!(missing.contains(INDEX_ENV), "{missing}");
        let last = |index: &'static str| {
            move |name: &str| match name {
                INDEX_ENV => Some(index.to_owned()),
                COUNT_ENV => Some("4".to_owned()),
                _ => None,
            }
        };
        assert_eq!(Shard::from_env(last("3")).unwrap().to_string(), "4/4");
        let beyond = Shard::from_env(last("4")).unwrap_err().to_string();
        assert!(beyond.contains("0-based"), "{beyond}");
    }

    #[test]
    fn malformed_shards_are_refused() {
        for bad in ["0/4", "5/4", "1/0", "x", "1-4"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!("2/4".parse::<Shard>().unwrap().to_string(), "2/4");
    }
}
