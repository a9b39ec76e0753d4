"""The URL conf, walked: every route of the project (the admin site's included) as concrete paths, and
what "refused" means for a request without the right login or permission."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from django.urls import URLPattern, URLResolver, get_resolver, reverse

# URL patterns (as the walk below spells them) that answer an anonymous request without a login,
# on purpose. Anything else must redirect to the login page or answer 403: a new view added without
# `admin_site.admin_view` (or a login check) makes the set of public patterns differ and fails the test.
# Static files are served by WhiteNoise's middleware, outside the URL conf, so the walk never sees them.
PUBLIC_BY_DESIGN = {
    "healthz",  # component health only (names, states, ages); for the container's HEALTHCHECK
    "admin/login/",  # the login form itself
    # Logging out needs no login; without one the admin sends the visitor to its index (which
    # then asks for the login): nothing is shown.
    "admin/logout/",
}

_ROUTE_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^()]*)\)")


def walk_patterns(patterns, prefix=""):
    """(pattern spelled as a route, pattern object) of every leaf of the URL conf, recursively
    (the admin site's get_urls() included: admin.site.urls is a resolver like any other)."""
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk_patterns(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p
        else:  # pragma: no cover
            raise AssertionError(f"unknown URL conf entry {p!r}")


def sample_urls(spelled: str, samples: dict[str, str]) -> list[str]:
    """Concrete paths for one pattern: converters get sample values, regex alternations expand."""
    path = spelled
    if "(?P<" in path or path.startswith("^") or "$" in path:  # a regex (re_path) part
        urls = [path.replace("^", "").replace("$", "")]
        while any(_REGEX_GROUP.search(u) for u in urls):
            expanded = []
            for u in urls:
                m = _REGEX_GROUP.search(u)
                if not m:
                    expanded.append(u)
                    continue
                body = m["body"]
                if re.fullmatch(r"[\w|]+", body):
                    values = body.split("|")
                elif body in (".*", ".+"):
                    values = ["no-such-page/"]
                else:
                    raise AssertionError(f"teach sample_urls a value for group {m['name']!r} ({body!r}) of {spelled!r}")
                expanded += [u[:m.start()] + v + u[m.end():] for v in values]
            urls = expanded
        for u in urls:
            assert not re.search(r"[\\()\[\]*+?|^$]", u), f"regex left in {u!r} from {spelled!r}: teach sample_urls"
        return ["/" + u for u in urls]

    def value(m):
        name, converter = m["name"], m["converter"] or "str"
        if name in samples:
            return samples[name]
        return {"int": "1", "path": "1", "str": "1", "slug": "x", "uuid": "00000000-0000-0000-0000-000000000001"}[converter]

    return ["/" + _ROUTE_PARAM.sub(value, path)]


def all_urls(samples) -> list[tuple[str, str]]:
    out = []
    for spelled, _pattern in walk_patterns(get_resolver().url_patterns):
        for url in sample_urls(spelled, samples):
            out.append((spelled, url))
    return out


def is_login_redirect(response, url: str) -> bool:
    if response.status_code != 302:
        return False
    location = urlsplit(response["Location"])
    return location.path == reverse("admin:login") and parse_qs(location.query).get("next") == [url]


def refused(response, url: str) -> bool:
    return response.status_code == 403 or is_login_redirect(response, url)
