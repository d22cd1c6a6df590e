from django.urls import path

from backend.urls import urlpatterns as product_urls
from bench.plain import plain_me, plain_wait

urlpatterns = [
    *product_urls,
    path("bench/plain-me", plain_me),
    path("bench/plain-wait", plain_wait),
]
