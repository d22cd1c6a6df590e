from django.contrib import admin
from django.templatetags.static import static
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from backend import client, health, metrics, receipts
from schema.schema import schema
from schema.view import GraphQLView


class Favicon(RedirectView):
    """/favicon.ico, which browsers ask for by themselves: the client's icon, by its
    hashed name (so not a permanent redirect: the name changes with the icon)."""

    def get_redirect_url(self, *args: object, **kwargs: object) -> str:
        return static("client/icon.svg")


urlpatterns = [
    path("", client.client, name="client"),
    path("graphql/", csrf_exempt(GraphQLView.as_view(schema=schema)), name="graphql"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("sms/receipts/twilio", receipts.twilio, name="twilio-receipts"),
    path("sms/receipts/webhook", receipts.webhook, name="webhook-receipts"),
    path("favicon.ico", Favicon.as_view(), name="favicon"),
    # Outside /admin/, so the admin's cookie middleware stays off everything else.
    path("admin", RedirectView.as_view(url="/admin/", permanent=True)),
    path("admin/", admin.site.urls),
]
