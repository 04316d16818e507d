//! When iterations start: the closed model (a fixed number of workers, each starting its next
//! iteration when the last one ends) or the open model (iterations arrive at a fixed rate
//! whatever the system does, and latency counts from the *intended* start, so a slow server
//! cannot hide its queueing — no coordinated omission). Pure schedule arithmetic; the runner
//! does the waiting.

use std::fmt;
use std::time::Duration;

/// How iterations are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// `workers` loops, each running one iteration after another.
    Closed {
        /// Number of concurrent workers.
        workers: usize,
    },
    /// Iterations arrive at `rate` per second (after the ramp-up), served by at most
    /// `max_in_flight` concurrent workers; an arrival finding them all busy waits, and its
    /// wait counts in its latency.
    Open {
        /// Arrivals per second.
        rate: f64,
        /// Upper bound on concurrent iterations.
        max_in_flight: usize,
    },
}

/// Pacing of one run: the model, the ramp-up and the bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    /// Closed or open.
    pub model: Model,
    /// Closed: workers start evenly spread over this time. Open: the arrival rate grows
    /// linearly from 0 to `rate` over this time.
    pub ramp_up: Duration,
    /// Stop starting iterations after this much time.
    pub duration: Option<Duration>,
    /// Stop after this many iterations.
    pub iterations: Option<u64>,
}

impl Pacing {
    /// Number of worker tasks the runner spawns.
    pub fn workers(&self) -> usize {
        match self.model {
            Model::Closed { workers } => workers.max(1),
            Model::Open { max_in_flight, .. } => max_in_flight.max(1),
        }
    }

    /// Closed model: when worker `w` starts its first iteration, relative to the run start.
    pub fn worker_delay(&self, w: usize) -> Duration {
        let n = self.workers() as u32;
        match self.model {
            Model::Closed { .. } => self.ramp_up * (w as u32) / n,
            Model::Open { .. } => Duration::ZERO,
        }
    }

    /// Open model: the intended start of iteration `n`, relative to the run start. Arrivals
    /// during the ramp-up follow a linearly growing rate: the n-th arrives when
    /// `rate * t^2 / (2 * ramp_up) = n`; afterwards one every `1 / rate` seconds.
    pub fn intended_offset(&self, n: u64) -> Option<Duration> {
        let Model::Open { rate, .. } = self.model else {
            return None;
        };
        let ramp = self.ramp_up.as_secs_f64();
        let n = n as f64;
        let ramp_arrivals = rate * ramp / 2.0;
        let secs = if n < ramp_arrivals {
            (2.0 * ramp * n / rate).sqrt()
        } else {
            ramp + (n - ramp_arrivals) / rate
        };
        Some(Duration::from_secs_f64(secs))
    }
}

impl fmt::Display for Pacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.model {
            Model::Closed { workers } => write!(f, "closed concurrency={workers}")?,
            Model::Open {
                rate,
                max_in_flight,
            } => write!(f, "open rate={rate}/s max-in-flight={max_in_flight}")?,
        }
        if !self.ramp_up.is_zero() {
            write!(f, " ramp-up={}", humantime::format_duration(self.ramp_up))?;
        }
        if let Some(d) = self.duration {
            write!(f, " duration={}", humantime::format_duration(d))?;
        }
        if let Some(n) = self.iterations {
            write!(f, " iterations={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(rate: f64, ramp_secs: u64) -> Pacing {
        Pacing {
            model: Model::Open {
                rate,
                max_in_flight: 8,
            },
            ramp_up: Duration::from_secs(ramp_secs),
            duration: None,
            iterations: None,
        }
    }

    #[test]
    fn open_arrivals_are_evenly_spaced_without_ramp_up() {
        let p = open(100.0, 0);
        assert_eq!(p.intended_offset(0), Some(Duration::ZERO));
        let t = p.intended_offset(250).unwrap().as_secs_f64();
        assert!((t - 2.5).abs() < 1e-9, "{t}");
    }

    #[test]
    fn open_ramp_up_admits_half_the_steady_arrivals_then_continues_at_rate() {
        let p = open(100.0, 10);
        // 500 arrivals during a 10 s ramp to 100/s; the 500th arrives at 10 s.
        let at_end_of_ramp = p.intended_offset(500).unwrap().as_secs_f64();
        assert!((at_end_of_ramp - 10.0).abs() < 1e-9);
        let quarter = p.intended_offset(125).unwrap().as_secs_f64();
        assert!((quarter - 5.0).abs() < 1e-9, "{quarter}");
        let later = p.intended_offset(600).unwrap().as_secs_f64();
        assert!((later - 11.0).abs() < 1e-9);
        let mut last = Duration::ZERO;
        for n in 0..2000 {
            let t = p.intended_offset(n).unwrap();
            assert!(t >= last);
            last = t;
        }
    }

    #[test]
    fn closed_workers_start_spread_over_the_ramp_up() {
        let p = Pacing {
            model: Model::Closed { workers: 4 },
            ramp_up: Duration::from_secs(4),
            duration: None,
            iterations: Some(10),
        };
        let delays: Vec<u64> = (0..4).map(|w| p.worker_delay(w).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 3]);
        assert_eq!(p.intended_offset(3), None);
        assert_eq!(
            p.to_string(),
            "closed concurrency=4 ramp-up=4s iterations=10"
        );
    }
}
