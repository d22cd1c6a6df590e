from django.urls import path

from backend.urls import urlpatterns as product_urls
from bench.plain import plain_me

urlpatterns = [*product_urls, path("bench/plain-me", plain_me)]
