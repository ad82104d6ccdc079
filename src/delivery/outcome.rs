//! What one attempt came to, decided from the HTTP result alone (pure): the
//! Standard Webhooks status semantics, DESIGN's 410 rule, and Retry-After as
//! a floor on 429 and 503.

use std::time::Duration;

use super::http::{HttpError, Response};
use crate::{
    dead_letter::DeadReason,
    subscriptions::{credentials::CredentialError, template::RenderError},
};

/// The last thing that went wrong: a status when the endpoint answered, and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: Option<u16>,
    pub error: String,
}

/// What one attempt came to. Data, not an `Err`: the deliverer branches on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status: u16,
    },
    /// Try again; not sooner than `not_before` (a Retry-After, capped by the retry policy).
    Retry {
        failure: Failure,
        not_before: Option<Duration>,
    },
    Dead {
        reason: DeadReason,
        failure: Failure,
    },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "success",
            Self::Retry { .. } => "retry",
            Self::Dead { .. } => "dead",
        }
    }
}

/// Classifies attempt number `attempt` of `max_attempts`.
pub fn classify(result: &Result<Response, HttpError>, attempt: u32, max_attempts: u32) -> Outcome {
    let (failure, not_before) = match result {
        Ok(response) if (200..300).contains(&response.status) => {
            return Outcome::Delivered {
                status: response.status,
            };
        }
        Ok(response) => {
            let failure = Failure {
                status: Some(response.status),
                error: match response.status {
                    300..=399 => format!("HTTP {} (redirects are not followed)", response.status),
                    status => format!("HTTP {status}"),
                },
            };
            if response.status == 410 {
                return Outcome::Dead {
                    reason: DeadReason::Gone,
                    failure,
                };
            }
            let not_before = match response.status {
                429 | 503 => response.retry_after,
                _ => None,
            };
            (failure, not_before)
        }
        Err(HttpError::Forbidden(refusal)) => {
            return Outcome::Dead {
                reason: DeadReason::ForbiddenTarget,
                failure: Failure {
                    status: None,
                    error: refusal.to_string(),
                },
            };
        }
        Err(err) => (
            Failure {
                status: None,
                error: err.to_string(),
            },
            None,
        ),
    };
    retry_unless_exhausted(failure, not_before, attempt, max_attempts)
}

/// A retryable failure: retried while attempts remain, else dead as `max_attempts`.
fn retry_unless_exhausted(
    failure: Failure,
    not_before: Option<Duration>,
    attempt: u32,
    max_attempts: u32,
) -> Outcome {
    if attempt >= max_attempts {
        Outcome::Dead {
            reason: DeadReason::MaxAttempts,
            failure,
        }
    } else {
        Outcome::Retry {
            failure,
            not_before,
        }
    }
}

/// Classifies an attempt that failed before sending: a template bug, a
/// credential name no secret can have included, is final (`render_error`); a
/// missing credential is retried, since the operator may mount it, until the
/// attempts run out.
pub fn classify_render(err: &RenderError, attempt: u32, max_attempts: u32) -> Outcome {
    let failure = Failure {
        status: None,
        error: err.to_string(),
    };
    match err {
        RenderError::Template(_) | RenderError::Credential(CredentialError::BadName(_)) => {
            Outcome::Dead {
                reason: DeadReason::RenderError,
                failure,
            }
        }
        RenderError::Credential(CredentialError::Missing(_)) => {
            retry_unless_exhausted(failure, None, attempt, max_attempts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Result<Response, HttpError> {
        Ok(Response {
            status: code,
            retry_after: Some(Duration::from_secs(7)),
            body: Vec::new(),
        })
    }

    #[test]
    fn every_2xx_is_delivered() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(
                classify(&status(code), 1, 3),
                Outcome::Delivered { status: code }
            );
        }
    }

    #[test]
    fn other_statuses_are_retried_while_attempts_remain() {
        for code in [301, 302, 400, 401, 404, 500, 502] {
            match classify(&status(code), 1, 3) {
                Outcome::Retry {
                    failure,
                    not_before,
                } => {
                    assert_eq!(failure.status, Some(code));
                    assert_eq!(not_before, None, "Retry-After counts only on 429 and 503");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn retry_after_is_a_floor_on_429_and_503() {
        for code in [429, 503] {
            assert!(matches!(
                classify(&status(code), 1, 3),
                Outcome::Retry { not_before: Some(d), .. } if d == Duration::from_secs(7)
            ));
        }
    }

    #[test]
    fn the_last_attempt_is_dead_with_max_attempts() {
        assert!(matches!(
            classify(&status(500), 3, 3),
            Outcome::Dead { reason: DeadReason::MaxAttempts, failure } if failure.status == Some(500)
        ));
        assert!(matches!(
            classify(&Err(HttpError::Timeout), 3, 3),
            Outcome::Dead { reason: DeadReason::MaxAttempts, failure } if failure.status.is_none()
        ));
    }

    #[test]
    fn a_410_is_final_at_any_attempt() {
        assert!(matches!(
            classify(&status(410), 1, 13),
            Outcome::Dead {
                reason: DeadReason::Gone,
                ..
            }
        ));
    }

    #[test]
    fn a_forbidden_target_is_final_at_any_attempt() {
        let refusal = crate::delivery::egress::Refusal {
            reason: "loopback",
            address: "127.0.0.1".into(),
        };
        assert!(matches!(
            classify(&Err(HttpError::Forbidden(refusal)), 1, 13),
            Outcome::Dead {
                reason: DeadReason::ForbiddenTarget,
                ..
            }
        ));
    }

    #[test]
    fn transport_errors_are_retried() {
        assert!(matches!(
            classify(&Err(HttpError::Connect("refused".into())), 1, 3),
            Outcome::Retry { failure, .. } if failure.status.is_none()
        ));
    }

    #[test]
    fn a_template_error_is_final_and_a_missing_credential_is_retried() {
        let bug = RenderError::Template("undefined value".into());
        assert!(matches!(
            classify_render(&bug, 1, 5),
            Outcome::Dead {
                reason: DeadReason::RenderError,
                ..
            }
        ));
        let missing = RenderError::Credential(CredentialError::Missing("TOKEN".into()));
        match classify_render(&missing, 1, 5) {
            Outcome::Retry { failure, .. } => {
                assert_eq!(failure.error, "missing_credential: TOKEN")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_render(&missing, 5, 5),
            Outcome::Dead {
                reason: DeadReason::MaxAttempts,
                ..
            }
        ));
        let bad_name = RenderError::Credential(CredentialError::BadName("a/b".into()));
        assert!(matches!(
            classify_render(&bad_name, 1, 5),
            Outcome::Dead {
                reason: DeadReason::RenderError,
                ..
            }
        ));
    }
}
