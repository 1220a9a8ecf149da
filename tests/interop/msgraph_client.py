"""Microsoft's own Graph client (msgraph-sdk, from PyPI) against the test Graph server.

Prints one line per finding for tests/graph_interop.rs. Between the first delta round and the
second it waits for a line on stdin, so that the test can deliver and delete mail meanwhile.
Environment: GRAPH_URL (service root), GRAPH_TOKEN, GRAPH_CA (PEM of the test CA).
"""

import asyncio
import os
import ssl
import sys

import httpx
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.headers_collection import HeadersCollection
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.graph_request_adapter import options as sdk_options
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.users.item.mail_folders.item.messages.messages_request_builder import (
    MessagesRequestBuilder,
)
from msgraph_core import GraphClientFactory


class Token(AccessTokenProvider):
    async def get_authorization_token(self, uri, additional_authentication_context={}):
        return os.environ["GRAPH_TOKEN"]

    def get_allowed_hosts_validator(self):
        return AllowedHostsValidator(["localhost"])


def say(*parts):
    print(*parts, flush=True)


async def main():
    tls = ssl.create_default_context(cafile=os.environ["GRAPH_CA"])
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=tls, base_url=os.environ["GRAPH_URL"]),
        # The SDK's own middleware options (it maps /users/me-token-to-replace to /me).
        options=sdk_options,
    )
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(Token()), client=http)
    adapter.base_url = os.environ["GRAPH_URL"]
    client = GraphServiceClient(request_adapter=adapter)

    me = await client.me.get()
    say("ME", me.user_principal_name)

    inbox = await client.me.mail_folders.by_mail_folder_id("inbox").get()
    say("INBOX", inbox.display_name, inbox.total_item_count)

    children = await client.me.mail_folders.by_mail_folder_id(inbox.id).child_folders.get()
    say("CHILDREN", ",".join(sorted(f.display_name for f in children.value)))

    query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
        top=1,
        select=["id", "subject", "from", "receivedDateTime"],
        orderby=["receivedDateTime desc"],
    )
    newest = await client.me.mail_folders.by_mail_folder_id("inbox").messages.get(
        request_configuration=RequestConfiguration(query_parameters=query)
    )
    m = newest.value[0]
    say("NEWEST", m.subject, "|", m.from_.email_address.address)

    # A full delta round in small pages, following nextLink to the deltaLink.
    headers = HeadersCollection()
    headers.add("Prefer", "odata.maxpagesize=2")
    delta = client.me.mail_folders.by_mail_folder_id("inbox").messages.delta
    dquery = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        select=["id", "subject", "receivedDateTime"]
    )
    page = await delta.get(
        request_configuration=RequestConfiguration(query_parameters=dquery, headers=headers)
    )
    ids, pages = [], 1
    while page.odata_next_link:
        ids += [x.id for x in page.value]
        page = await delta.with_url(page.odata_next_link).get(
            request_configuration=RequestConfiguration(headers=headers)
        )
        pages += 1
    ids += [x.id for x in page.value]
    say("ROUND", len(ids), "pages", pages)
    link = page.odata_delta_link
    say("DELTALINK", "yes" if link else "no")

    say("READY")
    sys.stdin.readline()
    page = await delta.with_url(link).get()
    added = sorted(x.subject for x in page.value if x.subject)
    removed = [x for x in page.value if x.additional_data.get("@removed")]
    say("CHANGES", ",".join(added), "removed", len(removed))

    # A lost token: Graph's error JSON, as the SDK reads it.
    sys.stdin.readline()
    try:
        await delta.with_url(page.odata_delta_link).get()
        say("GONE", "no error")
    except Exception as e:  # ODataError
        code = getattr(getattr(e, "error", None), "code", None)
        say("GONE", getattr(e, "response_status_code", None), code)


asyncio.run(main())
