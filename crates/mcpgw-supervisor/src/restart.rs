//! When to restart a backend that failed: exponential backoff with full
//! jitter, reset after a healthy period, and a circuit breaker that stops a
//! crash loop from burning the machine.
//!
//! Pure policy, no clock and no I/O: the caller reports how long the backend
//! stayed up and gets back what to do. The circuit's half-open probe falls
//! out of the rules: after the open period the caller starts the backend
//! once; a quick failure opens the circuit again at once, a healthy run
//! closes it.

use std::time::Duration;

use mcpgw_catalog::RestartSpec;

/// What to do after a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    RetryAfter {
        /// The jittered delay.
        delay: Duration,
        /// Failures in a row, this one included.
        failures: u32,
    },
    /// The engine is unreachable: try again after this delay.
    WaitForEngine {
        /// The jittered delay.
        delay: Duration,
    },
    /// Too many failures in a row: refuse calls for this long, then probe.
    OpenCircuit {
        /// How long the circuit stays open.
        open_for: Duration,
        /// Failures in a row, this one included.
        failures: u32,
    },
}

impl Decision {
    /// How long to wait before the next start.
    pub fn pause(&self) -> Duration {
        match *self {
            Self::RetryAfter { delay, .. } | Self::WaitForEngine { delay } => delay,
            Self::OpenCircuit { open_for, .. } => open_for,
        }
    }

    /// What the failure `report` and this decision say together, for the
    /// log and for calls that reach the server meanwhile.
    pub fn explain(&self, report: &str) -> String {
        match *self {
            Self::WaitForEngine { delay } => {
                format!("{report}; trying again in {} ms", delay.as_millis())
            }
            Self::RetryAfter { delay, failures } => format!(
                "{report}; restarting in {} ms (failure {failures} in a row)",
                delay.as_millis()
            ),
            Self::OpenCircuit { open_for, failures } => format!(
                "{report}; circuit open after {failures} failure(s) in a row: calls fail at once for {}s, then one probe start",
                open_for.as_secs()
            ),
        }
    }
}

/// One backend's restart history.
#[derive(Debug)]
pub struct Restarts {
    spec: RestartSpec,
    failures: u32,
    rng: fastrand::Rng,
}

impl Restarts {
    /// A fresh history under `spec`.
    pub fn new(spec: RestartSpec) -> Self {
        Self {
            spec,
            failures: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// A history with a fixed random seed, for tests.
    pub fn with_seed(spec: RestartSpec, seed: u64) -> Self {
        Self {
            spec,
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The backend failed after running for `uptime`.
    pub fn failed(&mut self, uptime: Duration) -> Decision {
        if uptime >= self.spec.healthy_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.spec.circuit_after {
            return Decision::OpenCircuit {
                open_for: self.spec.circuit_open,
                failures: self.failures,
            };
        }
        Decision::RetryAfter {
            delay: self.jittered(self.ceiling()),
            failures: self.failures,
        }
    }

    /// A failure that retrying cannot fix soon (a missing image): open the
    /// circuit at once and probe after the open period.
    pub fn give_up(&mut self) -> Decision {
        self.failures = self.failures.saturating_add(1).max(self.spec.circuit_after);
        Decision::OpenCircuit {
            open_for: self.spec.circuit_open,
            failures: self.failures,
        }
    }

    /// The engine was unreachable: not the backend's fault, so it does not
    /// count toward the circuit. Retry after a short jittered delay until
    /// the engine is back.
    pub fn engine_down(&mut self) -> Decision {
        let ceiling = self.spec.max_backoff.min(Duration::from_secs(2));
        Decision::WaitForEngine {
            delay: self.jittered(ceiling),
        }
    }

    /// The backoff ceiling for the current failure count: the initial
    /// backoff doubled per failure after the first, capped.
    pub fn ceiling(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(30);
        self.spec
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.spec.max_backoff)
    }

    /// Full jitter: uniformly random between zero and the ceiling, so that
    /// many backends failing together do not restart in lockstep.
    fn jittered(&mut self, ceiling: Duration) -> Duration {
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RestartSpec {
        RestartSpec {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            healthy_after: Duration::from_secs(10),
            circuit_after: 6,
            circuit_open: Duration::from_secs(30),
        }
    }

    #[test]
    fn decisions_explain_themselves_and_say_how_long_to_wait() {
        let check = |decision: Decision, pause: u64, expect: &str| {
            assert_eq!(decision.pause(), Duration::from_millis(pause));
            assert_eq!(decision.explain("it crashed"), expect);
        };
        check(
            Decision::RetryAfter {
                delay: Duration::from_millis(412),
                failures: 2,
            },
            412,
            "it crashed; restarting in 412 ms (failure 2 in a row)",
        );
        check(
            Decision::WaitForEngine {
                delay: Duration::from_millis(1500),
            },
            1500,
            "it crashed; trying again in 1500 ms",
        );
        check(
            Decision::OpenCircuit {
                open_for: Duration::from_secs(60),
                failures: 5,
            },
            60_000,
            "it crashed; circuit open after 5 failure(s) in a row: calls fail at once for 60s, then one probe start",
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let mut r = Restarts::with_seed(spec(), 7);
        let mut ceilings = Vec::new();
        for _ in 0..5 {
            let Decision::RetryAfter { delay, failures } = r.failed(Duration::ZERO) else {
                panic!("circuit opened too early");
            };
            let ceiling = r.ceiling();
            assert!(
                delay <= ceiling,
                "failure {failures}: {delay:?} > {ceiling:?}"
            );
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000]);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut r = Restarts::with_seed(spec(), 1);
        let delays: Vec<Duration> = (0..50)
            .map(|_| {
                let mut fresh = Restarts::with_seed(spec(), r.rng.u64(..));
                match fresh.failed(Duration::ZERO) {
                    Decision::RetryAfter { delay, .. } => delay,
                    other => panic!("expected a retry, got {other:?}"),
                }
            })
            .collect();
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 40,
            "jitter gives distinct delays: {delays:?}"
        );
        assert!(
            delays.iter().any(|d| d.as_millis() < 50) && delays.iter().any(|d| d.as_millis() >= 50)
        );
    }

    #[test]
    fn circuit_opens_after_repeated_quick_failures_and_half_open_probe_reopens_it() {
        let mut r = Restarts::with_seed(spec(), 3);
        for _ in 0..5 {
            assert!(matches!(
                r.failed(Duration::from_secs(1)),
                Decision::RetryAfter { .. }
            ));
        }
        assert_eq!(
            r.failed(Duration::from_secs(1)),
            Decision::OpenCircuit {
                open_for: Duration::from_secs(30),
                failures: 6
            }
        );
        // The half-open probe fails quickly: open again at once.
        assert!(matches!(
            r.failed(Duration::ZERO),
            Decision::OpenCircuit { failures: 7, .. }
        ));
        // A probe that stays healthy closes the circuit and resets the backoff.
        assert!(matches!(
            r.failed(Duration::from_secs(11)),
            Decision::RetryAfter { failures: 1, .. }
        ));
        assert_eq!(r.ceiling(), Duration::from_millis(100));
    }
}
