"""What a session shows of its device: browser and OS from the User-Agent, coarsely.

"Chrome on Android", "Safari on iOS", "Firefox on Windows": enough for a person to tell
their devices apart, not a fingerprint (no versions, no models). The parsing is
ua-parser's (its rules are kept up to date by the ua-parser project); this module only
chooses what to keep of its answer.
"""

import functools
import re

from ua_parser import parse

MAX_USER_AGENT = 512  # what is parsed of a longer header
UNKNOWN = "Unknown"
_MOBILE = re.compile(r"^Mobile |(?: Mobile)+(?= |$)")
# ua-parser's names where a person knows another.
_NAMES = {"Mac OS X": "macOS", "Other": ""}


def _name(family: str | None) -> str:
    if not family:
        return ""
    family = _MOBILE.sub("", family).strip()
    family = re.sub(r" (?:iOS|WebView)$", "", family)
    return _NAMES.get(family, family)


@functools.lru_cache(maxsize=1024)
def describe(user_agent: str) -> str:
    """ "<browser> on <OS>", or the one of them known, or UNKNOWN."""
    result = parse(user_agent[:MAX_USER_AGENT])
    browser = _name(result.user_agent.family if result.user_agent else None)
    system = _name(result.os.family if result.os else None)
    if browser and system:
        return f"{browser} on {system}"[:100]
    return (browser or system or UNKNOWN)[:100]
