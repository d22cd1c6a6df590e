"""Delivery receipts from the SMS providers: `/sms/receipts/twilio` and `/sms/receipts/webhook`.

Each receipt must prove where it comes from before anything is read into the log:
- Twilio's status callback carries X-Twilio-Signature, an HMAC-SHA1 of the callback URL
  and the form, keyed with TWILIO_AUTH_TOKEN (users.sms.twilio_signature). The URL is
  the one this service gave Twilio (SMS_RECEIPTS_URL), never the request's own Host,
  which a proxy may have rewritten.
- The webhook gateway signs its receipts as the service signs its messages (Standard
  Webhooks, SMS_WEBHOOK_SECRET); a timestamp more than five minutes off is refused, so
  a recorded receipt cannot be replayed later.
Unsigned or wrongly signed: 403. Not a receipt of ours (an unknown message): 404.
Malformed: 400. Accepted: 204, whether or not the status moved (it only moves forward).
"""

import hmac
import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from backend import database
from users import sms
from users.services import deliveries

logger = logging.getLogger(__name__)


def _refused(status: int, reason: str) -> HttpResponse:
    logger.warning("receipt refused (%d): %s", status, reason)
    return JsonResponse({"error": reason}, status=status)


async def _record(provider: str, message_id: str, status: str, error: str) -> HttpResponse:
    receipt = await database.run(
        deliveries.record_receipt,
        provider=provider,
        message_id=message_id,
        status=status,
        error=error,
    )
    if not receipt.found:
        return _refused(404, "no such message")
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
async def twilio(request: HttpRequest) -> HttpResponse:
    callback = sms.twilio_status_callback()
    if settings.SMS_BACKEND != "twilio" or callback is None:
        return _refused(404, "Twilio receipts are not configured (SMS_RECEIPTS_URL)")
    form = {name: request.POST.getlist(name) for name in request.POST}
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not hmac.compare_digest(
        signature.encode(), sms.twilio_signature(callback, form).encode()
    ):
        return _refused(403, "X-Twilio-Signature does not match")
    message_id = request.POST.get("MessageSid", "")
    status = sms.TWILIO_STATUSES.get(request.POST.get("MessageStatus", ""))
    if not message_id or status is None:
        return _refused(400, "MessageSid and a known MessageStatus are needed")
    return await _record("twilio", message_id, status, request.POST.get("ErrorCode", ""))


@csrf_exempt
@require_POST
async def webhook(request: HttpRequest) -> HttpResponse:
    if settings.SMS_BACKEND != "webhook" or not settings.SMS_WEBHOOK_SECRET:
        return _refused(404, "webhook receipts are not configured")
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError

    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        Webhook(settings.SMS_WEBHOOK_SECRET).verify(request.body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError) as error:  # missing, garbled, stale, wrong
        return _refused(403, f"signature: {error}")
    try:
        payload = json.loads(request.body)
    except ValueError:
        return _refused(400, "the body is not JSON")
    if not isinstance(payload, dict):
        return _refused(400, "the body must be a JSON object")
    message_id, status = payload.get("id"), payload.get("status")
    if not isinstance(message_id, str) or status not in sms.WEBHOOK_STATUSES:
        return _refused(400, f"`id` and a `status` of {sorted(sms.WEBHOOK_STATUSES)} are needed")
    return await _record("webhook", message_id, status, str(payload.get("error") or ""))
