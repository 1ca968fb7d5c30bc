"""The checks and hooks of scripts/fuzz.sh's schemathesis run, and the set-up it runs first.

    python scripts/fuzz_checks.py setup BASE_URL FIXTURES_JSON

registers two users, publishes a video, comments, follows and chats through BASE_URL, and
writes their ids and tokens to FIXTURES_JSON. Loaded by schemathesis (SCHEMATHESIS_HOOKS),
this file then

- swaps generated tokens and ids for those of the fixtures part of the time, so that
  requests get past authentication and reach things that exist, as well as being refused;
- checks that every answer is the JSON envelope (`status_code`, `status_msg`), with
  `Retry-After` on the refusals that promise one;
- checks that a refused request stored nothing: the events in the event store
  (FUZZ_EVENTS_DATABASE_URL) are counted before and after each call, one call at a time;
- prints, at the end, how each route answered (`status_code`s by operation).
"""

import atexit
import collections
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "system-tests" / "fixtures" / "clip.mp4"
# The set-up's users, and the password of both.
AUTHOR, FAN, PASSWORD = "fuzz-author", "fuzz-fan", "fuzz-password"


def setup(base, fixtures_path):
    import requests

    http = requests.Session()

    def call(method, route, **kwargs):
        response = http.request(method, base + route, timeout=60, **kwargs)
        body = response.json()
        return body

    def done(method, route, **kwargs):
        body = call(method, route, **kwargs)
        if body.get("status_code") != 0:
            sys.exit(f"set-up: {method} {route} refused: {body}")
        return body

    def registered(name):
        body = done(
            "POST",
            "/douyin/user/register/",
            params={"username": name, "password": PASSWORD},
        )
        return body["user_id"], body["token"]

    # The databases are new for each run: these names are free.
    author, author_token = registered(AUTHOR)
    fan, fan_token = registered(FAN)
    with CLIP.open("rb") as clip:
        done(
            "POST",
            "/douyin/publish/action/",
            data={"token": author_token, "title": "fuzz clip"},
            files={"data": ("clip.mp4", clip, "video/mp4")},
        )
    # Reads follow writes through the broker and the projector: wait for the video.
    deadline = time.monotonic() + 60
    while True:
        listed = call(
            "GET",
            "/douyin/publish/list/",
            params={"user_id": author, "token": author_token},
        )
        if listed.get("status_code") == 0 and listed["video_list"]:
            video = listed["video_list"][0]
            break
        if time.monotonic() > deadline:
            sys.exit(f"set-up: the published video was never listed: {listed}")
        time.sleep(0.2)
    comment = done(
        "POST",
        "/douyin/comment/action/",
        params={
            "token": fan_token,
            "video_id": video["id"],
            "action_type": 1,
            "comment_text": "first",
        },
    )["comment"]
    done(
        "POST",
        "/douyin/favorite/action/",
        params={"token": fan_token, "video_id": video["id"], "action_type": 1},
    )
    # Friends, with a message between them: every list has something in it.
    for token, other in [(author_token, fan), (fan_token, author)]:
        done(
            "POST",
            "/douyin/relation/action/",
            params={"token": token, "to_user_id": other, "action_type": 1},
        )
    done(
        "POST",
        "/douyin/message/action/",
        params={"token": author_token, "to_user_id": fan, "action_type": 1, "content": "hi"},
    )
    media = "/media/"
    fixtures = {
        "users": [author, fan],
        "tokens": [author_token, fan_token],
        "video": video["id"],
        "comment": comment["id"],
        "media_keys": [
            url[url.index(media) + len(media) :]
            for url in (video["play_url"], video["cover_url"])
            if media in url
        ],
    }
    Path(fixtures_path).write_text(json.dumps(fixtures, indent=2) + "\n")
    print(f"set-up: {json.dumps(fixtures)}", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:2] != ["setup"] or len(sys.argv) != 4:
        sys.exit(__doc__)
    setup(sys.argv[2], sys.argv[3])
    sys.exit(0)


# What follows runs inside schemathesis.

import psycopg  # noqa: E402
import schemathesis  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FIXTURES = json.loads(Path(os.environ["FUZZ_FIXTURES"]).read_text())
# Values a generated parameter may be swapped for, by name. The generated value stays one of
# the choices, the last: hypothesis favours the first, so most requests get past the token and
# reach what exists, and tokens that are not valid and ids that do not exist are tried too.
KNOWN = {
    "token": FIXTURES["tokens"],
    "user_id": FIXTURES["users"],
    "to_user_id": FIXTURES["users"][::-1],
    "video_id": [FIXTURES["video"]],
    "comment_id": [FIXTURES["comment"]],
    # Publish's file: a video gets past the checks of what was sent, to the title's and
    # to storing it.
    "data": [CLIP.read_bytes()],
}


# Logins with the fixtures' credentials succeed (a sign-up with them would only be a 409).
KNOWN_BY_PATH = {
    "/douyin/user/login/": {"username": [AUTHOR, FAN], "password": [PASSWORD]},
}


def with_known_values(context, values):
    if not isinstance(values, dict):
        return st.just(values)
    path = context.operation.path if context.operation else None
    known = {**KNOWN, **KNOWN_BY_PATH.get(path, {})}
    return st.fixed_dictionaries(
        {
            name: st.sampled_from([*known[name], value]) if name in known else st.just(value)
            for name, value in values.items()
        }
    )


@schemathesis.hook
def flatmap_query(context, query):
    return with_known_values(context, query)


@schemathesis.hook
def flatmap_body(context, body):
    return with_known_values(context, body)


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    if not isinstance(path_parameters, dict) or "key" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([*FIXTURES["media_keys"], path_parameters["key"]]).map(
        lambda key: {**path_parameters, "key": key}
    )


EVENTS = psycopg.connect(os.environ["FUZZ_EVENTS_DATABASE_URL"], autocommit=True)


def count_events():
    return EVENTS.execute("SELECT count(*) FROM events").fetchone()[0]


# Events counted before each call, and stored by it, by case id. Calls are made one at a
# time (--workers 1), and nothing else writes events while the fuzzer runs.
BEFORE = {}
STORED = {}
# How each operation answered: HTTP status and status_code, counted per call.
ANSWERS = collections.defaultdict(collections.Counter)


def status_code_of(response):
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("status_code") if isinstance(body, dict) else None


# nginx lets one address sign up or log in 10 times a second (limit_req, a burst of 20), then
# answers 429: the fuzzer keeps below, to reach the services rather than nginx's refusal.
ACCOUNT_ROUTES = ("/douyin/user/register/", "/douyin/user/login/")
ACCOUNT_INTERVAL = 0.11
last_account_call = 0.0


def keep_below_the_account_limit(case):
    global last_account_call
    if case.operation.path in ACCOUNT_ROUTES:
        time.sleep(max(0.0, last_account_call + ACCOUNT_INTERVAL - time.monotonic()))
        last_account_call = time.monotonic()


@schemathesis.hook
def before_call(context, case, kwargs):
    keep_below_the_account_limit(case)
    # A media key spans two segments (`videos/1.mp4`), which schemathesis percent-encodes as
    # it does any path parameter: send the `/` as the client does.
    if case.path_parameters and "key" in case.path_parameters:
        key = str(case.path_parameters["key"])
        case.path_parameters["key"] = key.replace("%2F", "/").replace("%2f", "/")
    BEFORE[case.id] = count_events()


@schemathesis.hook
def after_call(context, case, response):
    before = BEFORE.pop(case.id, None)
    if before is not None:
        STORED[case.id] = count_events() - before
    code = status_code_of(response)
    answer = f"{code}" if response.status_code == 200 else f"HTTP {response.status_code}/{code}"
    ANSWERS[f"{case.method} {case.operation.path}"][answer] += 1


def is_media(case, response):
    return case.operation.path.startswith("/media/") and response.status_code in (200, 206, 416)


@schemathesis.check
def json_envelope(ctx, response, case):
    """Every answer is a JSON object with an integer `status_code` and a string `status_msg`,
    whatever was sent (but the bytes of media); refusals that ask to come back later say when."""
    if is_media(case, response):
        return None
    kind = (response.headers.get("content-type") or [""])[0]
    if not kind.startswith("application/json"):
        raise AssertionError(
            f"HTTP {response.status_code} answered {kind or 'no Content-Type'}, not JSON: "
            f"{response.content[:300]!r}"
        )
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"not JSON: {response.content[:300]!r}") from None
    if not isinstance(body, dict):
        raise AssertionError(f"not a JSON object: {body!r:.300}")
    code, message = body.get("status_code"), body.get("status_msg")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
        raise AssertionError(f"no `status_code` (int) and `status_msg` (string): {body!r:.300}")
    if code != 0 and not message:
        raise AssertionError(f"a refusal ({code}) without a `status_msg`")
    if response.status_code == 200 and code in (429, 503):
        after = (response.headers.get("retry-after") or [""])[0]
        if not after.isdigit() or int(after) < 1:
            raise AssertionError(f"status_code {code} without a `Retry-After` in seconds")
    return None


@schemathesis.check
def nothing_stored_when_refused(ctx, response, case):
    """A request answered with a non-zero `status_code` stored no event."""
    stored = STORED.get(case.id)
    code = status_code_of(response)
    if stored and code not in (None, 0):
        raise AssertionError(
            f"refused with status_code {code} (HTTP {response.status_code}), yet "
            f"{stored} event(s) were stored"
        )
    return None


def report():
    width = max((len(operation) for operation in ANSWERS), default=0)
    print("\nAnswers per operation (status_code; HTTP status where not 200):", file=sys.stderr)
    for operation, answers in sorted(ANSWERS.items()):
        counts = ", ".join(f"{answer}: {n}" for answer, n in sorted(answers.items()))
        total = sum(answers.values())
        print(f"  {operation:<{width}}  {total:>5} calls  {counts}", file=sys.stderr)


atexit.register(report)
