"""A real third-party EWS client (exchangelib) against mailpulse's test EWS server.

Run by tests/ews_interop.rs with EWS_URL, EWS_USER, EWS_PASSWORD and EWS_CA (the test CA, PEM);
EWS_AUTH=ntlm logs in with NTLM (exchangelib's requests_ntlm), EWS_ONLY_READ=1 stops after reading.
Prints one line per finding; "SUBSCRIBED"/"PULL_SUBSCRIBED" ask the test to deliver a message.
TLS is verified against the test CA with exchangelib's documented custom-adapter hook.
"""
import os
import sys
import time

import requests.adapters
from exchangelib import BASIC, DELEGATE, NTLM, Account, Build, Configuration, Credentials, Version
from exchangelib.properties import NewMailEvent
from exchangelib.protocol import BaseProtocol

CA = os.environ["EWS_CA"]


class TestCAAdapter(requests.adapters.HTTPAdapter):
    def cert_verify(self, conn, url, verify, cert):
        super().cert_verify(conn=conn, url=url, verify=CA, cert=cert)


BaseProtocol.HTTP_ADAPTER_CLS = TestCAAdapter


def say(*parts):
    print(*parts, flush=True)


config = Configuration(
    service_endpoint=os.environ["EWS_URL"],
    credentials=Credentials(os.environ["EWS_USER"], os.environ["EWS_PASSWORD"]),
    auth_type=NTLM if os.environ.get("EWS_AUTH") == "ntlm" else BASIC,
    version=Version(build=Build(15, 1, 2507, 6)),
)
account = Account(
    primary_smtp_address=os.environ["EWS_USER"],
    config=config,
    autodiscover=False,
    access_type=DELEGATE,
)

newest = account.inbox.all().order_by("-datetime_received").only("subject", "author", "datetime_received")[:1]
for item in newest:
    say("NEWEST", item.subject, "|", item.author.email_address if item.author else "-")
account.inbox.refresh()
say("TOTAL", account.inbox.total_count)
if os.environ.get("EWS_ONLY_READ"):
    say("DONE")
    sys.exit(0)

# A streaming subscription receiving a NewMailEvent.
with account.inbox.streaming_subscription() as subscription_id:
    say("SUBSCRIBED")
    found = None
    deadline = time.monotonic() + 60
    while found is None and time.monotonic() < deadline:
        for notification in account.inbox.get_streaming_events(subscription_id, connection_timeout=1, max_notifications_returned=1):
            for event in notification.events:
                if isinstance(event, NewMailEvent):
                    found = event.item_id.id
                    break
            if found:
                break
    say("STREAM_EVENT", found)

# A pull subscription.
with account.inbox.pull_subscription() as (subscription_id, watermark):
    say("PULL_SUBSCRIBED")
    found = None
    deadline = time.monotonic() + 60
    while found is None and time.monotonic() < deadline:
        for notification in account.inbox.get_events(subscription_id, watermark):
            for event in notification.events:
                watermark = event.watermark or watermark
                if isinstance(event, NewMailEvent):
                    found = event.item_id.id
        if found is None:
            time.sleep(0.5)
    say("PULL_EVENT", found)

say("DONE")
sys.exit(0)
