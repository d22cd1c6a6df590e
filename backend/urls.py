from django.contrib import admin
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from backend import health
from schema.schema import schema
from schema.view import GraphQLView

urlpatterns = [
    path("", health.client, name="client"),
    path("graphql/", csrf_exempt(GraphQLView.as_view(schema=schema)), name="graphql"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
]
