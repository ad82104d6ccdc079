//! Disabling a subscription herald gave up on: after a 410 Gone, or once it
//! has failed for `delivery.disable_after` without a success. Written to the
//! store (every worker's snapshot follows within a second), logged, counted,
//! and announced as an outcome event; its failure clock stops.

use tracing::{info, warn};

use super::{
    outcomes::{OutcomeEvent, Outcomes},
    shared::DeliveryCore,
};
use crate::metrics::DisabledReason;

pub async fn disable(
    core: &DeliveryCore,
    outcomes: Option<&Outcomes>,
    name: &str,
    reason: DisabledReason,
) {
    let result = core
        .store
        .update(name, |s| {
            let change = s.enabled;
            s.enabled = false;
            Ok::<_, std::convert::Infallible>(change)
        })
        .await;
    match result {
        Ok(Some(Ok(sub))) if !sub.enabled => {
            let why = match reason {
                DisabledReason::Gone => "the endpoint answered 410 Gone".to_owned(),
                DisabledReason::Failing => format!(
                    "every attempt failed for {}",
                    humantime::format_duration(core.disable_after)
                ),
            };
            info!(
                subscription = name,
                reason = reason.as_str(),
                "subscription disabled: {why}"
            );
            core.metrics.disabled(reason);
            if let Some(outcomes) = outcomes {
                outcomes.announce(OutcomeEvent::disabled(name, reason));
            }
        }
        Ok(_) => {} // deleted meanwhile
        Err(err) => {
            warn!(subscription = name, reason = reason.as_str(), error = %err, "could not disable a subscription");
            return;
        }
    }
    core.failures.reset(name).await;
}
