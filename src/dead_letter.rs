//! What a dead letter says: why a delivery ended in `<p>.dead`, and the
//! headers that carry it (DESIGN, "The delivery request"). `delivery::dead`
//! writes and reads them, and `herald_dead_letters_total{reason}` counts by
//! the same names.

/// `x-herald-reason`: one of [`DeadReason`]'s names.
pub const REASON_HEADER: &str = "x-herald-reason";
/// `x-herald-last-status`: the HTTP status of the last attempt; absent when none answered.
pub const LAST_STATUS_HEADER: &str = "x-herald-last-status";
/// `x-herald-last-error`: what went wrong last, in words.
pub const LAST_ERROR_HEADER: &str = "x-herald-last-error";
/// `x-herald-attempts`: attempts made (0 when none was).
pub const ATTEMPTS_HEADER: &str = "x-herald-attempts";
/// `x-herald-subscription`: whose delivery it was; absent when the task could not be read.
pub const SUBSCRIPTION_HEADER: &str = "x-herald-subscription";
/// `x-herald-died-at`: when the delivery was given up, in unix milliseconds.
pub const DIED_AT_HEADER: &str = "x-herald-died-at";

/// Why a delivery ended in `<p>.dead`. Its schema lists the names
/// [`DeadReason::as_str`] gives (a test keeps them the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum DeadReason {
    MaxAttempts,
    Gone,
    SubscriptionDisabled,
    ForbiddenTarget,
    RenderError,
    Poison,
}

impl DeadReason {
    pub const ALL: [Self; 6] = [
        Self::MaxAttempts,
        Self::Gone,
        Self::SubscriptionDisabled,
        Self::ForbiddenTarget,
        Self::RenderError,
        Self::Poison,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxAttempts => "max_attempts",
            Self::Gone => "gone",
            Self::SubscriptionDisabled => "subscription_disabled",
            Self::ForbiddenTarget => "forbidden_target",
            Self::RenderError => "render_error",
            Self::Poison => "poison",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_names() {
        for r in [
            "max_attempts",
            "gone",
            "subscription_disabled",
            "forbidden_target",
            "render_error",
            "poison",
        ] {
            assert_eq!(DeadReason::parse(r).unwrap().as_str(), r);
        }
    }

    #[test]
    fn the_schema_names_the_reasons_as_headers_do() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(DeadReason::schema()).unwrap();
        let names: Vec<&str> = DeadReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(schema["enum"], serde_json::json!(names));
    }
}
