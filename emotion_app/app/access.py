"""Who may do what, decided on the server for every endpoint.

Three roles, each with everything the ones before it have:

- ``visitor``: analyse media, send their own media to annotation;
- ``annotator``: label the queues open to them (and see only those);
- ``admin``: queues, import, export, fine-tune, activate, roll back.

Who someone is depends on how the app runs (``auth_mode``):

- ``oauth``: a Space with ``hf_oauth: true``; people sign in with Hugging Face and the
  annotator is the signed-in user. Roles come from ``EMOTION_APP_ADMINS`` and
  ``EMOTION_APP_ANNOTATORS`` (Space variables); everyone else is a visitor.
- ``password``: a users file exists (``EMOTION_APP_USERS``, else ``<data>/users.json``,
  written by ``python -m emotion_app users add``); Gradio's login page asks for a name
  and password (scrypt hashes in the file), and the file gives each user a role.
- ``local``: neither, and the server listens on this machine only: one person on a
  laptop, who is admin.
- ``open``: neither, on a public address: everyone is a visitor (admin work needs one
  of the modes above).

Handlers stay plain functions; ``on`` wires one to an event so that the role is checked
before the request is queued and again when it runs, and so that one caller cannot fill
the queue: each may have at most ``MAX_PENDING`` limited requests waiting or running
(except in ``local`` mode, where the one caller is the machine's owner). A stream (the
Live tab) runs its handler once per frame and holds its queue slot until it ends, which
Gradio does not report: each caller may have ``MAX_STREAMS`` open, each place held for
``STREAM_TIME_LIMIT`` seconds, the longest a stream (stalled or not) may run.
"""
from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..core.errors import InputError
from ..core.paths import data_dir

log = logging.getLogger(__name__)

ROLES = ("visitor", "annotator", "admin")
ALL_QUEUES = "*"
LOCAL_USER = "local"
USERS_FILE = "users.json"
MAX_PENDING = 3  # limited requests one caller may have queued or running at once
PENDING_TTL = 15 * 60  # a request cancelled while queued frees its place after this long
MAX_STREAMS = 1  # live streams one caller may have open at once
STREAM_TIME_LIMIT = 60  # seconds a stream may run, waits for its next frame included
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 8


@dataclass(frozen=True)
class User:
    name: str | None  # None: an anonymous visitor
    role: str = "visitor"
    queues: frozenset[str] = frozenset()  # the queues an annotator may label; ALL_QUEUES for all

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def may_label(self, queue: str) -> bool:
        return self.role == "admin" or (self.has("annotator") and bool({ALL_QUEUES, queue} & self.queues))

    def visible_queues(self, names: list[str]) -> list[str]:
        return [name for name in names if self.may_label(name)]

    @property
    def shown_as(self) -> str:
        return f"{self.name} ({self.role})" if self.name else "not signed in (visitor)"


# --- the users file ------------------------------------------------------------------------------

def users_file() -> Path:
    return Path(os.environ.get("EMOTION_APP_USERS") or data_dir() / USERS_FILE)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        found = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found.hex(), digest)


def read_users(path: Path | None = None) -> dict[str, dict]:
    """``{name: {"password": hash, "role": ..., "queues": [...]}}``; {} when there is no file.
    A damaged file is an error, never read as "no users" (that would open the app)."""
    path = path or users_file()
    if not path.exists():
        return {}
    try:
        users = json.loads(path.read_text())
        if not isinstance(users, dict) or not all(isinstance(u, dict) and u.get("role") in ROLES
                                                   for u in users.values()):
            raise ValueError("expected {name: {password, role, queues}}")
    except ValueError as exc:
        raise InputError(f"{path}: not a users file ({exc})") from None
    return users


def add_user(name: str, password: str, role: str, queues: list[str] | None = None, path: Path | None = None) -> Path:
    """Add or replace a user in the users file (written whole, then renamed into place)."""
    name = name.strip()
    if not name or name == LOCAL_USER:
        raise InputError(f"a user name must be non-empty and not {LOCAL_USER!r}")
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD:
        raise InputError(f"a password needs at least {MIN_PASSWORD} characters")
    path = path or users_file()
    users = read_users(path)
    users[name] = {"password": hash_password(password), "role": role, "queues": sorted(queues or [ALL_QUEUES])}
    return write_users(users, path)


def write_users(users: dict[str, dict], path: Path | None = None) -> Path:
    """Write the users file whole, readable by its owner only, then rename it into place."""
    path = path or users_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(users, indent=1))
    temporary.chmod(0o600)
    temporary.replace(path)
    return path


def password_check(name: str, password: str) -> bool:
    """Gradio's ``auth`` callable: the users file, read at each login (added users work at once)."""
    user = read_users().get(name)
    return bool(user) and verify_password(password, user.get("password", ""))


# --- who is calling --------------------------------------------------------------------------------

def auth_mode() -> str:
    if os.environ.get("SPACE_ID"):
        return "oauth" if os.environ.get("OAUTH_CLIENT_ID") else "open"
    if users_file().exists():
        return "password"
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    return "local" if local else "open"


def _configured_roles() -> dict[str, tuple[str, frozenset[str]]]:
    """Roles named by the environment: ``EMOTION_APP_ADMINS="ann,bo"`` and
    ``EMOTION_APP_ANNOTATORS="cy,di:faces|sent"`` (an annotator without queues labels all)."""
    roles = {}
    for entry in os.environ.get("EMOTION_APP_ANNOTATORS", "").split(","):
        name, _, queues = entry.strip().partition(":")
        if name:
            roles[name] = ("annotator", frozenset(q.strip() for q in queues.split("|") if q.strip()) or
                           frozenset({ALL_QUEUES}))
    for name in os.environ.get("EMOTION_APP_ADMINS", "").split(","):
        if name.strip():
            roles[name.strip()] = ("admin", frozenset({ALL_QUEUES}))
    return roles


def user_named(name: str | None, mode: str) -> User:
    if mode == "local":
        return User(LOCAL_USER, "admin", frozenset({ALL_QUEUES}))
    if not name:
        return User(None)
    role, queues = "visitor", frozenset()
    if mode == "password":
        entry = read_users().get(name, {})
        role, queues = entry.get("role", "visitor"), frozenset(entry.get("queues", []))
    configured = _configured_roles().get(name)
    if configured and ROLES.index(configured[0]) > ROLES.index(role):
        role, queues = configured
    return User(name, role, queues)


def current_user(request: gr.Request | None, profile: gr.OAuthProfile | None = None) -> User:
    mode = auth_mode()
    if mode == "oauth":
        name = profile.username if profile else None
    else:
        name = getattr(request, "username", None)
    return user_named(name, mode)


def caller_key(request: gr.Request | None, user: User) -> str:
    """Whom a request counts against: the signed-in name, else the client's address (on a
    Space, as its proxies report it: ``forwarded_client``)."""
    if user.name:
        return f"user:{user.name}"
    host = getattr(getattr(request, "client", None), "host", None) or "unknown"
    if os.environ.get("SPACE_ID") and request is not None:
        host = forwarded_client(request.headers.get("x-forwarded-for", ""), host)
    return f"address:{host}"


def forwarded_client(header: str, fallback: str) -> str:
    """The client's address in an X-Forwarded-For chain: the right-most public one. Each
    proxy appends the address it was called from, so entries to the left of the first
    proxy's are whatever the client sent (a new one per request would dodge the per-caller
    limit), and the proxies' own hops are private addresses."""
    for entry in reversed(header.split(",")):
        try:
            address = ipaddress.ip_address(entry.strip())
        except ValueError:
            continue
        if address.is_global:
            return str(address)
    return fallback


# --- wiring handlers -----------------------------------------------------------------------------

class PendingRequests:
    """Per-caller count of limited requests waiting or running, with a time limit on each
    place so that a request dropped from the queue does not hold it for ever."""

    def __init__(self, limit: int = MAX_PENDING, ttl: float = PENDING_TTL, what: str = "requests waiting or running"):
        self.limit, self.ttl, self.what = limit, ttl, what
        self._lock = threading.Lock()
        self._places: dict[str, list[float]] = {}

    def take(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            places = [t for t in self._places.get(key, []) if now - t < self.ttl]
            if len(places) >= self.limit:
                raise gr.Error(f"You already have {len(places)} {self.what}; wait for one to finish, then try "
                               "again.")
            self._places[key] = places + [now]

    def give_back(self, key: str) -> None:
        with self._lock:
            if self._places.get(key):
                self._places[key].pop(0)


PENDING = PendingRequests()
STREAMS = PendingRequests(MAX_STREAMS, STREAM_TIME_LIMIT, "live stream(s) open (each ends within "
                          f"{STREAM_TIME_LIMIT} s of its start)")


def require(user: User, role: str, signed_in: bool = False) -> None:
    """Refuse a caller without ``role``; with ``signed_in``, also one who is not signed in
    where people can sign in (what they do is kept, so it must be someone's)."""
    can_sign_in = user.name is None and auth_mode() in ("oauth", "password")
    if signed_in and can_sign_in:
        raise gr.Error("Sign in first: what you send is kept for annotators, under your name.")
    if user.has(role):
        return
    if can_sign_in:
        raise gr.Error(f"Sign in first: this needs the {role} role.")
    raise gr.Error(f"{user.shown_as} may not do this: it needs the {role} role.")


def _signature_of(handler, n_inputs: int, with_user: bool) -> tuple[list[str], bool]:
    """The handler's input names (for the API's documentation) and whether it reports
    progress (a ``gr.Progress()`` default, which Gradio only fills in when it sees it)."""
    try:
        parameters = list(inspect.signature(handler).parameters.values())[int(with_user):]
    except (TypeError, ValueError):
        parameters = []
    progress = any(isinstance(p.default, gr.Progress) for p in parameters)
    names = [p.name for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD and not isinstance(p.default, gr.Progress)]
    return (names[:n_inputs] if len(names) >= n_inputs else [f"input_{i}" for i in range(n_inputs)]), progress


def _with_caller(body, names: list[str], progress: bool):
    """``body(user, request, progress, *inputs)`` as a function Gradio calls with one value
    per name, injecting the progress tracker, the request and the signed-in profile
    (Gradio reads the signature to know what to inject)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(name, kind) for name in names]
    if progress:
        parameters.append(inspect.Parameter("progress", kind, default=gr.Progress()))
    parameters += [inspect.Parameter("request", kind, default=None, annotation=gr.Request),
                   inspect.Parameter("profile", kind, default=None, annotation=gr.OAuthProfile | None)]

    def call(*args):
        inputs, rest = args[:len(names)], args[len(names):]
        tracker = rest[0] if progress else None
        request, profile = rest[-2:]
        return body(current_user(request, profile), request, tracker, *inputs)

    call.__signature__ = inspect.Signature(parameters)
    call.__annotations__ = {"request": gr.Request, "profile": gr.OAuthProfile | None}
    call.__name__ = getattr(body, "__name__", "handler")
    return call


def on(trigger, handler, inputs=None, outputs=None, *, role: str = "visitor", signed_in: bool = False,
       limited: bool = False, with_user: bool = False, stream: bool = False, **event_options):
    """Wire ``trigger`` (e.g. ``button.click``) to ``handler``: callers without ``role`` (or,
    with ``signed_in``, not signed in where they can sign in) are refused before their
    request is queued and again when it runs; ``limited`` requests count against the
    caller's ``MAX_PENDING``; ``with_user`` passes the ``User`` first.
    A ``stream`` (``camera.stream``) counts against ``MAX_STREAMS`` instead, and runs for
    at most ``STREAM_TIME_LIMIT`` seconds."""
    inputs = [] if inputs is None else inputs if isinstance(inputs, list) else [inputs]
    names, progress = _signature_of(handler, len(inputs), with_user)
    places = STREAMS if stream else PENDING
    if stream:
        event_options["time_limit"] = STREAM_TIME_LIMIT

    def admit(user, request, tracker, *values):
        """Gradio's validator, run as the request joins the queue: a refusal names its reason
        to the browser (beside the first input) and to API clients (a ValidationError)."""
        try:
            require(user, role, signed_in)
            if limited and auth_mode() != "local":  # on a laptop the one person may queue what they like
                places.take(caller_key(request, user))
        except gr.Error as refusal:
            verdicts = [gr.validate(False, refusal.message)] + [gr.validate(True, "")] * (len(values) - 1)
        else:
            verdicts = [gr.validate(True, "")] * len(values)
        return verdicts if len(verdicts) > 1 else verdicts[0]  # one input: one value, not a list of one

    def run(user, request, tracker, *values):
        try:
            require(user, role, signed_in)
            arguments = ((user,) if with_user else ()) + values
            return handler(*arguments, progress=tracker) if progress else handler(*arguments)
        finally:
            if limited and not stream and auth_mode() != "local":  # a stream's place lasts its time limit
                PENDING.give_back(caller_key(request, user))

    run.__name__ = getattr(handler, "__name__", "handler")
    # Gradio runs a validator when a request joins the queue; it needs at least one input
    validator = _with_caller(admit, names, False) if inputs else None
    return trigger(_with_caller(run, names, progress), inputs, outputs, validator=validator, **event_options)


def run_on_click(examples: gr.Examples, handler, inputs, outputs, **event_options):
    """Run ``handler`` when an example is clicked, as its tab's button would (limited,
    in the button's concurrency group), on an event the API does not offer (Gradio's own
    ``run_on_click`` adds an open endpoint outside both)."""
    return on(examples.load_input_event.then, handler, inputs, outputs, limited=True, api_visibility="private",
              api_name=f"{getattr(handler, '__name__', 'analysis')}_example", **event_options)


def identity(request: gr.Request, profile: gr.OAuthProfile | None = None) -> str:
    """The sign-in line at the top of the page."""
    user = current_user(request, profile)
    mode = auth_mode()
    if mode == "local":
        return "Running locally: you are **admin** (no sign-in on this machine)."
    if mode == "open":
        return "Analysis is open to everyone here; annotation and fine-tuning are off (no sign-in is configured)."
    if user.name is None:
        return "Not signed in: you can analyse media. Sign in to annotate."
    return f"Signed in as **{user.name}** ({user.role})."
