"""schemathesis hooks for scripts/check-api.sh (loaded through SCHEMATHESIS_HOOKS).

A subscription's `url` is where herald sends: `POST /v1/subscriptions/{name}/test`
delivers to it at once. Generated URLs name arbitrary hosts, so every URL that
herald would accept (http or https) is pointed at herald's own `/healthz` on
127.0.0.1 before it is sent: the run reaches no other machine. URLs that herald
refuses anyway (other schemes, not a string) are left as generated.
"""

import os

import schemathesis

SAFE_URL = os.environ["HERALD_CHECK_SAFE_URL"]


@schemathesis.hook
def before_call(context, case, **kwargs):
    body = case.body
    if isinstance(body, dict):
        url = body.get("url")
        if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
            body["url"] = SAFE_URL
