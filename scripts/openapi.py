#!/usr/bin/env python3
"""Writes docs/openapi.json, the OpenAPI 3.1 description of the client API.

    scripts/openapi.py           (re)write docs/openapi.json
    scripts/openapi.py --check   exit 1 when docs/openapi.json differs from what this writes

The document is made here rather than typed as JSON because most of it repeats: every route
shares the envelope, the refusals and the ways parameters arrive. The routes, parameters and
fields follow the client's contract (douyin-http-api.md); the limits follow the code (see
the comments below), and system-tests/tests/system/openapi.rs checks that the routes listed
here are the routes the services register.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "openapi.json"

# domain/src/id.rs: ids are handed out from 1 to 2^53 - 1, so that JSON readers hold them
# exactly; they are int64 on the wire.
MAX_ID = (1 << 53) - 1

# Control characters (Rust's char::is_control: general category Cc) and the bidirectional
# overrides and isolates domain/src/text.rs refuses. As JSON Schema (ECMA-262) regex classes.
CONTROLS = "\\u0000-\\u001f\\u007f-\\u009f"
LINE_BREAKS_ALLOWED = "\\u0000-\\u0009\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f"
BIDI = "\\u202a-\\u202e\\u2066-\\u2069"


def ref(name, kind="schemas"):
    return {"$ref": f"#/components/{kind}/{name}"}


def text_pattern(refused):
    """Something other than white space, and no character of `refused` anywhere."""
    return f"^[^{refused}]*[^\\s{refused}][^{refused}]*$"


def ident(description):
    return {
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "maximum": MAX_ID,
        "description": description,
    }


# Every parameter a route reads, by name. Routes pick theirs below; POST routes accept each
# one in the query string or in a form or multipart body.
PARAMETERS = {
    "token": {
        "type": "string",
        "description": "The token register or login answered with (a JWT).",
    },
    "username": {
        # domain/src/user/name.rs: 1 to 32 characters, no control character, no white space
        # at either end; kept as typed, since it is also the login.
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "pattern": f"^[^\\s{CONTROLS}]([^{CONTROLS}]*[^\\s{CONTROLS}])?$",
        "description": "1 to 32 characters, without control characters or white space at "
        "either end; case counts.",
    },
    "password": {
        # domain/src/account/password.rs
        "type": "string",
        "minLength": 1,
        "maxLength": 32,
        "description": "1 to 32 characters.",
    },
    "user_id": ident("The user whose information or list is asked for."),
    "to_user_id": ident("The other user."),
    "video_id": ident("The video."),
    "comment_id": ident("The comment to delete (with `action_type` 2)."),
    "latest_time": {
        "type": "integer",
        "format": "int64",
        "description": "Only videos published strictly before this time: Unix epoch "
        "milliseconds; below 10^11 it is read as seconds; 0, negative or missing means now.",
    },
    "pre_msg_time": {
        "type": "integer",
        "format": "int64",
        "description": "Only messages created after this time (Unix epoch milliseconds); "
        "missing means all.",
    },
    "title": {
        # domain/src/text.rs: Title, 100 characters, no line breaks.
        "type": "string",
        "minLength": 1,
        "maxLength": 100,
        "pattern": text_pattern(CONTROLS + BIDI),
        "description": "1 to 100 characters once white space around it is trimmed; no "
        "control characters (line breaks included) or bidirectional overrides.",
    },
    "comment_text": {
        # domain/src/text.rs: CommentText, 500 characters, line breaks allowed.
        "type": "string",
        "minLength": 1,
        "maxLength": 500,
        "pattern": text_pattern(LINE_BREAKS_ALLOWED + BIDI),
        "description": "The comment (with `action_type` 1): 1 to 500 characters once white "
        "space around it is trimmed; line breaks are kept, other control characters and "
        "bidirectional overrides refused.",
    },
    "content": {
        # domain/src/text.rs: MessageText, 1000 characters, line breaks allowed.
        "type": "string",
        "minLength": 1,
        "maxLength": 1000,
        "pattern": text_pattern(LINE_BREAKS_ALLOWED + BIDI),
        "description": "The message: 1 to 1000 characters once white space around it is "
        "trimmed; line breaks are kept, other control characters and bidirectional "
        "overrides refused.",
    },
}


def action_type(meanings):
    values = sorted(meanings)
    return {
        "type": "integer",
        "enum": values,
        "description": ", ".join(f"{v} = {meanings[v]}" for v in values)
        + ". Any other value is refused (400).",
    }


# The schema each parameter is described by, under components/schemas: ids share one.
SCHEMA_NAMES = {
    "token": "Token",
    "username": "UserName",
    "password": "Password",
    "user_id": "Id",
    "to_user_id": "Id",
    "video_id": "Id",
    "comment_id": "Id",
    "latest_time": "Time",
    "pre_msg_time": "Time",
    "title": "Title",
    "comment_text": "CommentText",
    "content": "MessageText",
}


def parameter_schemas():
    """components/schemas of the parameters: their limits, without the per-route meaning."""
    schemas = {}
    for name, schema_name in SCHEMA_NAMES.items():
        schema = {k: v for k, v in PARAMETERS[name].items() if k != "description"}
        if schema_name in ("Id", "Time"):
            schema["description"] = {
                "Id": "An id: int64, from 1 to 2^53 - 1.",
                "Time": "Unix epoch milliseconds.",
            }[schema_name]
        schemas[schema_name] = schema
    return schemas


def query_parameter(name, required, schema=None, description=None):
    if schema is None:
        schema = ref(SCHEMA_NAMES[name])
        description = description or PARAMETERS[name]["description"]
    else:
        description = description or schema.get("description")
        schema = {k: v for k, v in schema.items() if k != "description"}
    parameter = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


# Refusals every route may answer, whatever it does: a parameter it cannot read, a query
# string over 16 KiB, a body of parameters over 64 KiB, too many requests, a busy moment.
COMMON_REFUSALS = [400, 413, 414, 429, 503]
REFUSAL_MEANINGS = {
    400: "a parameter is missing or invalid (or the text has characters it may not have)",
    401: "no token, a bad or expired token, or wrong credentials",
    403: "the user may not do this",
    404: "what was asked for does not exist",
    408: "the upload is too slow (under 16 KiB/s on average after 30 s, or silent for 15 s)",
    409: "conflicts with what exists",
    413: "the body is too large (a body of parameters over 64 KiB, a video over "
    "MAX_UPLOAD_BYTES)",
    414: "the query string is longer than 16 KiB",
    429: "too many requests: try again after `Retry-After` seconds",
    503: "busy (every password check, upload or cover slot taken, a write raced too often): "
    "try again after `Retry-After` seconds",
}


def refusal(codes):
    return {
        "allOf": [ref("Refusal")],
        "properties": {"status_code": {"enum": sorted(set(codes))}},
    }


def operation(
    method,
    path,
    *,
    operation_id,
    tag,
    summary,
    auth,
    params,
    reply=None,
    refusals=(),
    description="",
    body=None,
):
    """`params`: (name, required) or (name, required, schema); `reply`: (schema name,
    required fields, properties) of the success beside `status_code` 0; `auth`: "required",
    "optional" or "none"."""
    parameters = []
    if auth != "none":
        parameters.append(
            query_parameter(
                "token",
                auth == "required" and body is None,
                description=PARAMETERS["token"]["description"]
                    + (
                        " Required: without it, or with a bad or expired one, status_code "
                        "401."
                        if auth == "required"
                        else " Optional: with it, `is_follow` and `is_favorite` are the "
                        "viewer's; a bad or expired one reads as none."
                    ),
            )
        )
    parameters += [query_parameter(*p) for p in params]
    codes = list(COMMON_REFUSALS) + list(refusals)
    if auth == "required":
        codes.append(401)
    codes = sorted(set(codes))

    success = {"allOf": [ref("Success")]}
    if reply:
        success = ref(reply)

    text = description.strip()
    text += ("\n\n" if text else "") + "Refusals (HTTP 200, `status_code`): " + "; ".join(
        f"{code} {REFUSAL_MEANINGS[code]}" for code in codes
    ) + "."

    op = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": text,
        "x-auth": auth,
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "Done (`status_code` 0), or refused (a non-zero `status_code`,"
                " `status_msg` saying why).",
                "headers": {"Retry-After": ref("RetryAfter", "headers")},
                "content": {
                    "application/json": {"schema": {"oneOf": [success, refusal(codes)]}}
                },
            },
            "500": ref("Fault", "responses"),
            "503": ref("Unavailable", "responses"),
        },
    }
    if method == "post":
        op["requestBody"] = body or form_body(parameters)
    return op


def form_body(parameters):
    """The same fields as the query string, as a form or a multipart body: the client sends
    some in both. Where both carry a field, the query string's wins."""
    schema = {
        "type": "object",
        "properties": {p["name"]: field(p) for p in parameters},
    }
    return {
        "required": False,
        "description": "The parameters may come in the body instead of (or as well as) the "
        "query string; the query string's win.",
        "content": {
            "application/x-www-form-urlencoded": {"schema": schema},
            "multipart/form-data": {"schema": schema},
        },
    }


def field(parameter):
    """A parameter as a field of a body."""
    schema = dict(parameter["schema"])
    if "description" in parameter:
        schema["description"] = parameter["description"]
    return schema


def user_schema():
    counts = {
        "follow_count": "How many users this user follows.",
        "follower_count": "How many users follow this user.",
        "total_favorited": "Likes received on all of this user's videos.",
        "work_count": "Videos published.",
        "favorite_count": "Videos this user likes.",
    }
    properties = {
        "id": {"type": "integer", "format": "int64"},
        "name": {"type": "string"},
        "follow_count": None,
        "follower_count": None,
        "is_follow": {
            "type": "boolean",
            "description": "The requesting user follows this user.",
        },
        "avatar": {"type": "string", "format": "uri", "description": "Avatar image URL."},
        "background_image": {
            "type": "string",
            "format": "uri",
            "description": "Profile header image URL.",
        },
        "signature": {
            "type": "string",
            "minLength": 1,
            "description": "Profile text; never empty (DEFAULT_SIGNATURE until users can set one).",
        },
        "total_favorited": None,
        "work_count": None,
        "favorite_count": None,
    }
    for name, meaning in counts.items():
        properties[name] = {
            "type": "integer",
            "format": "int64",
            "minimum": 0,
            "description": meaning,
        }
    return {"type": "object", "required": list(properties), "properties": properties}


def reply(fields, required=None):
    return {
        "allOf": [
            ref("Success"),
            {
                "type": "object",
                "required": list(required if required is not None else fields),
                "properties": fields,
            },
        ]
    }


def array_of(name, max_items=None):
    schema = {"type": "array", "items": ref(name)}
    if max_items:
        schema["maxItems"] = max_items
    return schema


def components():
    envelope_code = {
        "type": "integer",
        "format": "int32",
        "description": "0 on success; otherwise what went wrong, by the meaning of the HTTP "
        "status of the same number.",
    }
    user = user_schema()
    friend = {
        "allOf": [
            ref("User"),
            {
                "type": "object",
                "required": ["message", "msgType"],
                "properties": {
                    "message": {
                        "type": "string",
                        "description": "The latest message the requesting user "
                        "exchanged with this friend, either way, or empty (in another "
                        "user's list too: never a message of theirs).",
                    },
                    "msgType": {
                        "type": "integer",
                        "format": "int64",
                        "enum": [0, 1],
                        "description": "0: the requesting user received `message`; 1: sent "
                        "it.",
                    },
                },
            },
        ]
    }
    video = {
        "type": "object",
        "required": [
            "id",
            "author",
            "play_url",
            "cover_url",
            "favorite_count",
            "comment_count",
            "is_favorite",
            "title",
        ],
        "properties": {
            "id": {"type": "integer", "format": "int64"},
            "author": ref("User"),
            "play_url": {
                "type": "string",
                "format": "uri",
                "description": "Where the video streams from (under /media/, with ranges).",
            },
            "cover_url": {"type": "string", "format": "uri", "description": "A JPEG or PNG."},
            "favorite_count": {"type": "integer", "format": "int64", "minimum": 0},
            "comment_count": {
                "type": "integer",
                "format": "int64",
                "minimum": 0,
                "description": "Comments, deleted ones excluded.",
            },
            "is_favorite": {
                "type": "boolean",
                "description": "The requesting user likes it.",
            },
            "title": {"type": "string"},
        },
    }
    comment = {
        "type": "object",
        "required": ["id", "user", "content", "create_date"],
        "properties": {
            "id": {"type": "integer", "format": "int64"},
            "user": ref("User"),
            "content": {"type": "string"},
            "create_date": {
                "type": "string",
                "pattern": "^[0-9]{2}-[0-9]{2}$",
                "description": "`mm-dd`, at the server's DATE_UTC_OFFSET (+08:00).",
            },
        },
    }
    message = {
        "type": "object",
        "required": ["id", "to_user_id", "from_user_id", "content", "create_time"],
        "properties": {
            "id": {"type": "integer", "format": "int64"},
            "to_user_id": {"type": "integer", "format": "int64"},
            "from_user_id": {"type": "integer", "format": "int64"},
            "content": {"type": "string"},
            "create_time": {
                "type": "integer",
                "format": "int64",
                "description": "Unix epoch milliseconds.",
            },
        },
    }
    lists = "At most 1000 items; the client does not page them."
    video_list = {**array_of("Video", 1000), "description": lists}
    user_list = {**array_of("User", 1000), "description": lists}
    schemas = {
        "Envelope": {
            "type": "object",
            "description": "Every answer, of every route (and of a route that does not exist)"
            ", is this object, with the route's fields beside these two.",
            "required": ["status_code", "status_msg"],
            "properties": {"status_code": envelope_code, "status_msg": {"type": "string"}},
        },
        "Success": {
            "allOf": [ref("Envelope")],
            "properties": {"status_code": {"const": 0}},
        },
        "Refusal": {
            "allOf": [ref("Envelope")],
            "description": "A request refused (HTTP 200): `status_msg` says why, for the user.",
            "properties": {
                "status_code": {"enum": sorted(REFUSAL_MEANINGS)},
                "status_msg": {"minLength": 1},
            },
        },
        "Fault": {
            "allOf": [ref("Envelope")],
            "properties": {"status_code": {"enum": [500]}},
        },
        "Unavailable": {
            "allOf": [ref("Envelope")],
            "properties": {"status_code": {"enum": [503]}},
        },
        "NotFound": {
            "allOf": [ref("Envelope")],
            "properties": {"status_code": {"const": 404}},
        },
        "User": user,
        "FriendUser": friend,
        "Video": video,
        "Comment": comment,
        "Message": message,
        "SessionReply": reply(
            {
                "user_id": {"type": "integer", "format": "int64"},
                "token": {
                    "type": "string",
                    "description": "Send it as `token` to the routes that need one; it "
                    "expires after TOKEN_TTL_SECS (7 days).",
                },
            }
        ),
        "FeedReply": reply(
            {
                "video_list": {
                    **array_of("Video", 30),
                    "description": "Newest first, each published strictly before "
                    "`latest_time`.",
                },
                "next_time": {
                    "type": "integer",
                    "format": "int64",
                    "description": "The publish time (epoch ms) of the oldest video of "
                    "this page: the next page's `latest_time`. Now, when the page is empty.",
                },
            }
        ),
        "UserReply": reply({"user": ref("User")}),
        "VideoListReply": reply({"video_list": video_list}),
        "CommentReply": reply(
            {"comment": {**ref("Comment"), "description": "The comment posted (action 1)."}},
            required=[],
        ),
        "CommentListReply": reply(
            {"comment_list": {**array_of("Comment", 1000), "description": "Newest first."}}
        ),
        "UserListReply": reply({"user_list": user_list}),
        "FriendListReply": reply(
            {"user_list": {**array_of("FriendUser", 1000), "description": lists}}
        ),
        "ChatReply": reply(
            {
                "message_list": {
                    **array_of("Message", 1000),
                    "description": "Both directions, oldest first, only those created "
                    "after `pre_msg_time`.",
                }
            }
        ),
    }
    schemas.update(parameter_schemas())
    return {
        "schemas": schemas,
        "headers": {
            "RetryAfter": {
                "description": "With `status_code` 429 or 503: seconds to wait before trying "
                "again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "responses": {
            "Fault": {
                "description": "A fault of the server: try again later.",
                "content": {"application/json": {"schema": ref("Fault")}},
            },
            "Unavailable": {
                "description": "A service or a dependency of it (Postgres, Redis, the "
                "broker) is unavailable or did not answer in time.",
                "headers": {"Retry-After": ref("RetryAfter", "headers")},
                "content": {"application/json": {"schema": ref("Unavailable")}},
            },
        },
    }


def routes():
    """Every route of the client's contract, in its order."""
    ops = {}

    def add(method, path, **kwargs):
        ops.setdefault(path, {})[method] = operation(method, path, **kwargs)

    add(
        "get",
        "/douyin/feed/",
        operation_id="feed",
        tag="base",
        summary="The video feed, newest first",
        auth="optional",
        params=[("latest_time", False)],
        reply="FeedReply",
        description="At most 30 videos. A page past the oldest video is empty.",
    )
    add(
        "post",
        "/douyin/user/register/",
        operation_id="register",
        tag="base",
        summary="Register: a new user, logged in",
        auth="none",
        params=[
            (
                "username",
                True,
                {
                    **PARAMETERS["username"],
                    "description": "As for login, and kept in Unicode's composed form "
                    "(NFC): a name differing from a taken one only in form is taken. "
                    "Invisible characters (default ignorable code points, but for a zero-width "
                    "joiner or emoji presentation selector within an emoji) are refused.",
                },
            ),
            (
                "password",
                True,
                {
                    **PARAMETERS["password"],
                    "minLength": 6,
                    "description": "6 to 32 characters (narrower than the client's 1 to 32: "
                    "login takes any length).",
                },
            ),
        ],
        reply="SessionReply",
        refusals=[409],
        description="409 when the name is taken.",
    )
    add(
        "post",
        "/douyin/user/login/",
        operation_id="login",
        tag="base",
        summary="Log in",
        auth="none",
        params=[("username", True), ("password", True)],
        reply="SessionReply",
        refusals=[401],
        description="A wrong password and an unknown name both answer 401 `wrong user name "
        "or password`, alike and as slowly.",
    )
    add(
        "get",
        "/douyin/user/",
        operation_id="user",
        tag="base",
        summary="A user's information",
        auth="required",
        params=[
            (
                "user_id",
                False,
                None,
                "The user whose information is asked for; without it, the token's own user.",
            )
        ],
        reply="UserReply",
        refusals=[404],
    )
    title = {**ref("Title"), "description": PARAMETERS["title"]["description"]}
    token = {
        **ref("Token"),
        "description": PARAMETERS["token"]["description"]
        + " Required, here or in the query string: without it, or with a bad or expired "
        "one, status_code 401 (before the file is read).",
    }
    add(
        "post",
        "/douyin/publish/action/",
        operation_id="publish",
        tag="base",
        summary="Publish a video",
        auth="required",
        params=[],
        refusals=[408],
        description="A multipart form only. `data` must be a video by its container "
        "signature (MP4/MOV, WebM, MKV, AVI, FLV, ...), at most MAX_UPLOAD_BYTES (100 MiB); "
        "the cover is taken with ffmpeg (a default one when it cannot be). Nothing is "
        "stored when the upload is refused. The client sends `token` in the form; the "
        "query string's wins.",
        body={
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["data", "token", "title"],
                        "properties": {
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/octet-stream",
                                "description": "The video file.",
                            },
                            "token": token,
                            "title": title,
                        },
                    },
                    "encoding": {"data": {"contentType": "application/octet-stream"}},
                }
            },
        },
    )
    add(
        "get",
        "/douyin/publish/list/",
        operation_id="publishList",
        tag="base",
        summary="The videos a user published, newest first",
        auth="required",
        params=[("user_id", True)],
        reply="VideoListReply",
        refusals=[404],
    )
    add(
        "post",
        "/douyin/favorite/action/",
        operation_id="favorite",
        tag="interaction",
        summary="Like or unlike a video",
        auth="required",
        params=[("video_id", True), ("action_type", True, action_type({1: "like", 2: "unlike"}))],
        refusals=[404],
        description="Liking what is liked, or unliking what is not, succeeds and changes "
        "nothing.",
    )
    add(
        "get",
        "/douyin/favorite/list/",
        operation_id="favoriteList",
        tag="interaction",
        summary="The videos a user likes, most recently liked first",
        auth="required",
        params=[("user_id", True)],
        reply="VideoListReply",
        refusals=[404],
    )
    add(
        "post",
        "/douyin/comment/action/",
        operation_id="comment",
        tag="interaction",
        summary="Post or delete a comment",
        auth="required",
        params=[
            ("video_id", True),
            ("action_type", True, action_type({1: "post", 2: "delete"})),
            ("comment_text", False),
            ("comment_id", False),
        ],
        reply="CommentReply",
        refusals=[403, 404],
        description="Action 1 needs `comment_text` and answers the comment posted; action 2 "
        "needs `comment_id`, and only the comment's author or the video's author may delete "
        "it (403). Deleting a deleted comment succeeds and changes nothing.",
    )
    add(
        "get",
        "/douyin/comment/list/",
        operation_id="commentList",
        tag="interaction",
        summary="The comments of a video, newest first",
        auth="optional",
        params=[("video_id", True)],
        reply="CommentListReply",
        refusals=[404],
    )
    add(
        "post",
        "/douyin/relation/action/",
        operation_id="relation",
        tag="social",
        summary="Follow or unfollow a user",
        auth="required",
        params=[
            ("to_user_id", True),
            ("action_type", True, action_type({1: "follow", 2: "unfollow"})),
        ],
        refusals=[404],
        description="Following yourself is refused (400), a user that does not exist too "
        "(404). Following whom you follow, or unfollowing a stranger, succeeds and changes "
        "nothing.",
    )
    for path, operation_id, summary in [
        ("/douyin/relation/follow/list/", "followList", "The users a user follows"),
        ("/douyin/relation/follower/list/", "followerList", "The users following a user"),
    ]:
        add(
            "get",
            path,
            operation_id=operation_id,
            tag="social",
            summary=summary,
            auth="required",
            params=[("user_id", True)],
            reply="UserListReply",
            refusals=[404],
        )
    add(
        "get",
        "/douyin/relation/friend/list/",
        operation_id="friendList",
        tag="social",
        summary="A user's friends: users who follow each other with that user",
        auth="required",
        params=[("user_id", True)],
        reply="FriendListReply",
        refusals=[404],
    )
    add(
        "post",
        "/douyin/message/action/",
        operation_id="message",
        tag="social",
        summary="Send a chat message",
        auth="required",
        params=[
            ("to_user_id", True),
            ("action_type", True, action_type({1: "send"})),
            ("content", True),
        ],
        refusals=[404],
        description="Only to an existing user (404) other than yourself (400).",
    )
    add(
        "get",
        "/douyin/message/chat/",
        operation_id="chat",
        tag="social",
        summary="The messages between the requesting user and another",
        auth="required",
        params=[("to_user_id", True), ("pre_msg_time", False)],
        reply="ChatReply",
        description="The client polls this about once a second with `pre_msg_time` set to "
        "the newest `create_time` it holds.",
    )
    ops["/media/{key}"] = {"get": media()}
    return ops


def media():
    range_headers = {
        "Content-Range": {
            "description": "`bytes <first>-<last>/<size>`.",
            "schema": {"type": "string"},
        },
    }
    body = {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}
    content = {kind: body for kind in ["video/*", "image/*", "application/octet-stream"]}
    return {
        "operationId": "media",
        "tags": ["media"],
        "summary": "A stored video or cover, with byte ranges",
        "description": "The URLs of `play_url` and `cover_url`. The client's player seeks "
        "with `Range: bytes=...`. One range is answered with 206; several, or a unit other "
        "than bytes, with the whole object (200). HEAD is answered too.",
        "x-auth": "none",
        "parameters": [
            {
                "name": "key",
                "in": "path",
                "required": True,
                # No pattern: OpenAPI path parameters are one segment, and this one is two.
                "description": "Made by the server: `videos/<id>.<ext>` or "
                "`covers/<id>.jpg`, its `/` not percent-encoded (the path goes on past it). "
                "Any other key answers 404.",
                "schema": {"type": "string", "minLength": 1},
                "example": "videos/1.mp4",
            },
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "description": "One byte range, `bytes=<first>-[<last>]` or `bytes=-<suffix>`.",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "The whole object.",
                "headers": {
                    "Accept-Ranges": {"schema": {"type": "string", "const": "bytes"}},
                    "Cache-Control": {
                        "description": "Keys never change what they hold: cached a year.",
                        "schema": {"type": "string"},
                    },
                },
                "content": content,
            },
            "206": {
                "description": "The range asked for.",
                "headers": {**range_headers},
                "content": content,
            },
            "404": {
                "description": "No such object (HTTP 404, with the envelope).",
                "content": {"application/json": {"schema": ref("NotFound")}},
            },
            "416": {
                "description": "The range starts past the end; `Content-Range: bytes "
                "*/<size>`. No body.",
                "headers": {**range_headers},
            },
            "500": ref("Fault", "responses"),
            "503": ref("Unavailable", "responses"),
        },
    }


def document():
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Douyin client API",
            "version": "1.0.0",
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "base", "description": "Feed, accounts, users, publishing."},
            {"name": "interaction", "description": "Likes and comments."},
            {"name": "social", "description": "Follows, friends and chat."},
            {"name": "media", "description": "Stored videos and covers."},
        ],
        "paths": routes(),
        "components": components(),
    }


DESCRIPTION = """\
The HTTP API of the "minimal Douyin" client, as this backend serves it behind one address.

- **Parameters** may come in the query string, an `application/x-www-form-urlencoded` body \
or a `multipart/form-data` body (publish: multipart only); where both carry one, the query \
string's wins. The client sends most in the query string.
- **`token`**: the JWT register and login answer with, as a parameter (not a header). Routes \
whose `x-auth` is `required` refuse a request without a valid one (`status_code` 401); \
`optional` ones personalise `is_follow` and `is_favorite` with one and ignore a bad one.
- **Every answer** is a JSON object with `status_code` (int32, 0 = success) and `status_msg`. \
A **refusal** answers **HTTP 200** with a non-zero `status_code`, since the client shows \
`status_msg` only from 200 bodies: 400 bad parameter or text, 401 no or bad token or wrong \
credentials, 403 not allowed, 404 not found, 409 name taken, 413 too large, 414 query string \
over 16 KiB, 429 rate limited and 503 busy (both with a `Retry-After` header, in seconds). \
A fault of the server answers HTTP 500, a failed or overloaded dependency HTTP 503, still \
with the envelope. A route that does not exist answers HTTP 404 `{"status_code": 404, \
"status_msg": "no such route"}`.
- **Ids** are int64, emitted as JSON numbers, and below 2^53. **Lists** are arrays, never \
null. **Times** are Unix epoch milliseconds.
- A request refused stores nothing.
"""


def main():
    text = json.dumps(document(), indent=2, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT} is out of date: run scripts/openapi.py", file=sys.stderr)
            sys.exit(1)
        return
    if sys.argv[1:]:
        sys.exit(__doc__)
    DOCUMENT.write_text(text)


if __name__ == "__main__":
    main()
