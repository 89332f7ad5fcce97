"""Who may do what, checked where it counts: on the server, through the web API as
``gradio_client`` calls it, and in a browser with two users signed in at once."""
from __future__ import annotations

import threading

import gradio as gr
import pytest

from emotion_app.app import access
from emotion_app.core.errors import InputError

from .conftest import ROOT, app_server, chromium_browser, needs_chromium, open_page

VISITOR, ALICE, BOB, ROOT_USER = (("vic", "visitor-password"), ("alice", "alice-password"), ("bob", "bob-password"),
                                  ("root", "root-password"))


# --- identities and roles, without a server ----------------------------------------------------

def test_passwords_are_stored_as_salted_hashes_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_APP_USERS", str(tmp_path / "users.json"))
    access.add_user("alice", "correct horse", "annotator", ["faces"])
    access.add_user("bob", "correct horse", "admin")
    stored = (tmp_path / "users.json").read_text()
    assert "correct horse" not in stored and stored.count("scrypt$") == 2
    users = access.read_users()
    assert users["alice"]["password"] != users["bob"]["password"]  # salted
    assert access.password_check("alice", "correct horse") and not access.password_check("alice", "correct hors")
    assert not access.password_check("nobody", "correct horse")
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0  # readable by its owner only
    with pytest.raises(InputError, match="at least 8"):
        access.add_user("carol", "short", "annotator")
    with pytest.raises(InputError, match="role must be"):
        access.add_user("carol", "long enough", "owner")


def test_a_damaged_users_file_is_an_error_not_an_open_door(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_APP_USERS", str(tmp_path / "users.json"))
    (tmp_path / "users.json").write_text('{"alice": {"role": "superuser"}}')
    assert access.auth_mode() == "password"
    with pytest.raises(InputError, match="not a users file"):
        access.password_check("alice", "anything")


def test_nothing_is_sent_to_annotation_where_annotation_is_off(tmp_path, monkeypatch):
    """A public address without sign-in: anyone may analyse, but what they send would be
    stored for nobody to label, so it is refused and the store stays empty."""
    from emotion_app.app.annotate import send_text_to_annotation
    monkeypatch.setenv("EMOTION_APP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("EMOTION_APP_USERS", str(tmp_path / "users.json"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert access.auth_mode() == "open"
    assert send_text_to_annotation("anonymous spam").startswith("Not sent to annotation: annotation is off")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.db"))


def test_the_mode_follows_where_the_app_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_APP_USERS", str(tmp_path / "users.json"))
    for name in ("SPACE_ID", "OAUTH_CLIENT_ID", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert access.auth_mode() == "local" and access.user_named(None, "local").role == "admin"
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert access.auth_mode() == "open" and access.user_named(None, "open").role == "visitor"
    access.add_user("alice", "long enough", "annotator")
    assert access.auth_mode() == "password"
    monkeypatch.setenv("SPACE_ID", "team/emotion")
    assert access.auth_mode() == "open"  # a Space without hf_oauth: nobody is more than a visitor
    monkeypatch.setenv("OAUTH_CLIENT_ID", "client-id")
    assert access.auth_mode() == "oauth"


def test_on_a_space_the_signed_in_hugging_face_user_is_the_annotator(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "team/emotion")
    monkeypatch.setenv("OAUTH_CLIENT_ID", "client-id")
    monkeypatch.setenv("EMOTION_APP_ADMINS", "lead")
    monkeypatch.setenv("EMOTION_APP_ANNOTATORS", "cy, di:faces|sent")
    profile = gr.OAuthProfile({"preferred_username": "di", "name": "Di", "profile": "", "picture": ""})
    di = access.current_user(None, profile)
    assert (di.name, di.role) == ("di", "annotator")
    assert di.may_label("faces") and di.may_label("sent") and not di.may_label("voices")
    assert access.user_named("cy", "oauth").may_label("voices")  # no queues listed: all of them
    assert access.user_named("lead", "oauth").has("admin")
    assert access.user_named("stranger", "oauth").role == "visitor"
    assert access.current_user(None, None) == access.User(None)  # not signed in


def test_one_caller_cannot_hold_more_than_its_share_of_the_queue():
    pending = access.PendingRequests(limit=2, ttl=60)
    pending.take("address:10.0.0.1")
    pending.take("address:10.0.0.1")
    with pytest.raises(gr.Error, match="already have 2 requests"):
        pending.take("address:10.0.0.1")
    pending.take("address:10.0.0.2")  # someone else is not affected
    pending.give_back("address:10.0.0.1")
    pending.take("address:10.0.0.1")
    expiring = access.PendingRequests(limit=1, ttl=0)  # a place dropped from the queue frees itself
    expiring.take("user:x")
    expiring.take("user:x")


def test_on_a_space_a_caller_is_the_address_its_proxies_saw_not_the_one_it_claims(monkeypatch):
    """Each proxy appends the address that called it to X-Forwarded-For; what a client puts
    there itself comes first and must not make it a new caller on every request."""
    class Request:
        def __init__(self, forwarded):
            self.client = type("Client", (), {"host": "10.16.3.80"})()  # the Space's own proxy
            self.headers = {"x-forwarded-for": forwarded} if forwarded is not None else {}

    monkeypatch.setenv("SPACE_ID", "someone/emotion")
    anonymous = access.User(None)
    keys = {access.caller_key(Request(f"10.0.0.{i}, 81.2.69.160, 10.16.0.1"), anonymous) for i in range(4)}
    keys |= {access.caller_key(Request(f"8.8.4.{i}, 81.2.69.160"), anonymous) for i in range(4)}
    assert keys == {"address:81.2.69.160"}
    assert access.caller_key(Request("81.2.69.160"), anonymous) == "address:81.2.69.160"
    assert access.caller_key(Request("garbage, 10.0.0.1"), anonymous) == "address:10.16.3.80"  # no public hop
    assert access.caller_key(Request(None), anonymous) == "address:10.16.3.80"
    assert access.caller_key(Request("81.2.69.160"), access.User("ann")) == "user:ann"
    monkeypatch.delenv("SPACE_ID")  # off a Space the header is not read at all
    assert access.caller_key(Request("81.2.69.160"), anonymous) == "address:10.16.3.80"


def test_one_caller_holds_one_live_stream_for_its_time_limit(tmp_path, monkeypatch):
    """Five /live joins by one visitor were all accepted, and two held both Live slots for
    300 s after the client left. A stream runs its handler once per frame: its place must
    outlast each frame, until the stream's time limit ends it."""
    from types import SimpleNamespace

    import app as app_module
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("EMOTION_APP_USERS", str(tmp_path / "no-users.json"))
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # a public address: everyone is a visitor
    monkeypatch.setattr(access, "STREAMS", access.PendingRequests(access.MAX_STREAMS, access.STREAM_TIME_LIMIT,
                                                                  "live stream(s) open"))
    live = next(fn for fn in app_module.build_app().fns.values() if fn.api_name == "live")

    def caller(host: str):
        return SimpleNamespace(client=SimpleNamespace(host=host), username=None)

    def join(host: str):
        return live.validator(None, None, caller(host), None)[0]  # frame, trace, request, profile: the frame's verdict

    assert join("10.0.0.1")["is_valid"]
    status = live.fn(None, None, caller("10.0.0.1"), None)[3]
    assert status.startswith("Press the camera's record button")  # a frame ran; the place stays taken
    refused = join("10.0.0.1")
    assert not refused["is_valid"] and "already have 1 live stream(s) open" in refused["message"]
    assert join("10.0.0.2")["is_valid"]  # someone else may stream


def test_fine_tune_jobs_are_limited_per_person_and_in_all(tmp_path):
    from emotion_app.finetune.jobs import MAX_UNFINISHED, JobStore
    jobs = JobStore(tmp_path / "finetune")
    jobs.add("job-1", "text", {"owner": "alice", "source": "x"})
    with pytest.raises(InputError, match="alice already has a fine-tune job"):
        jobs.add("job-2", "text", {"owner": "alice", "source": "x"})
    for i in range(MAX_UNFINISHED - 1):
        jobs.add(f"job-{i + 3}", "text", {"owner": f"admin-{i}", "source": "x"})
    with pytest.raises(InputError, match="the most the server takes"):
        jobs.add("job-9", "text", {"owner": "someone", "source": "x"})
    assert len(jobs.jobs()) == MAX_UNFINISHED


# --- the web API, signed in as four people ----------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    users = tmp_path_factory.mktemp("users") / "users.json"
    for (name, password), role, queues in ((VISITOR, "visitor", None), (ALICE, "annotator", ["faces"]),
                                           (BOB, "annotator", None), (ROOT_USER, "admin", None)):
        access.add_user(name, password, role, queues, path=users)
    data = tmp_path_factory.mktemp("access-data")
    with app_server(tmp_path_factory, EMOTION_APP_DATA=str(data), EMOTION_APP_USERS=str(users)) as url:
        yield url, data


def client(server, user):
    from gradio_client import Client
    return Client(server[0], auth=user, verbose=False)


def refused(call, reason: str = "may not do this") -> None:
    """``call`` is refused on the server, for ``reason``."""
    from gradio_client.exceptions import AppError, ValidationError
    with pytest.raises((AppError, ValidationError), match=reason):
        call()


def test_only_an_admin_switches_the_model_everyone_is_served(server):
    from emotion_app.models.registry import list_models
    text_models = [e.ref for e in list_models("text")]
    for user in (VISITOR, ALICE):
        refused(lambda: client(server, user).predict(text_models[-1], api_name="/activate"))
        refused(lambda: client(server, user).predict(None, api_name="/finetune_activate"))
        refused(lambda: client(server, user).predict(None, api_name="/finetune_rollback"))
        refused(lambda: client(server, user).predict(None, api_name="/finetune_cancel"))
    admin = client(server, ROOT_USER)
    table, message = admin.predict(text_models[-1], api_name="/activate")
    assert "is now the active text model" in message
    assert not (server[1] / "finetune" / "jobs").exists() or not any((server[1] / "finetune" / "jobs").iterdir())


def test_annotation_data_is_seen_only_by_annotators_of_its_queue(server, tmp_path):
    from gradio_client import handle_file
    from PIL import Image
    face = tmp_path / "private_face.png"
    Image.new("RGB", (64, 64), (120, 80, 60)).save(face)
    visitor = client(server, VISITOR)
    assert "Sent to the annotation queue" in visitor.predict(handle_file(str(face)), api_name="/send_image")
    refused(lambda: visitor.predict(api_name="/annotate_queues"))
    refused(lambda: visitor.predict("sent", api_name="/annotate_start"))
    refused(lambda: visitor.predict("sent", api_name="/annotate_export"))
    alice = client(server, ALICE)  # may label "faces" only
    assert alice.predict(api_name="/annotate_queues")["choices"] == []
    refused(lambda: alice.predict("sent", api_name="/annotate_start"), "may not open the queue 'sent'")
    refused(lambda: alice.predict("sent", api_name="/annotate_export"))
    refused(lambda: alice.predict("sent", [handle_file(str(face))], 1, api_name="/annotate_import"))
    refused(lambda: alice.predict("sent", 5, api_name="/annotate_set_required"))
    refused(lambda: alice.predict("sent", "Label the face", api_name="/annotate_set_instructions"))
    refused(lambda: alice.predict("sent", "margin", api_name="/annotate_set_order"))
    refused(lambda: alice.predict("sent", api_name="/annotate_rescore_status"))
    refused(lambda: alice.predict("sent", api_name="/annotate_rounds"))
    bob = client(server, BOB)  # may label every queue
    assert ["sent", "sent"] in bob.predict(api_name="/annotate_queues")["choices"]
    shown = bob.predict("sent", api_name="/annotate_start")  # the item line; the session keeps what is shown
    assert "private_face.png" in shown[5]


def test_the_annotator_is_the_signed_in_user_not_a_typed_name(server, tmp_path):
    from emotion_app.annotation import AnnotationStore
    texts = tmp_path / "texts.txt"
    texts.write_text("first text\nsecond text\n")
    admin = client(server, ROOT_USER)
    from gradio_client import handle_file
    message, _ = admin.predict("shared", [handle_file(str(texts))], 1, api_name="/annotate_import")
    assert "2 item(s) added" in message
    bob = client(server, BOB)
    view = bob.predict("shared", api_name="/annotate_start")[10]  # the token of the showing on bob's screen
    bob.predict("shared", False, view, api_name="/annotate_happy")
    root = client(server, ROOT_USER)
    root.predict("shared", api_name="/annotate_start")
    undone = root.predict("shared", api_name="/annotate_undo")  # undoes root's own answers: there are none
    assert "Nothing to undo" in undone[0]
    store = AnnotationStore(server[1])
    votes = {item.text: [(v.annotator, v.label) for v in vs] for item, vs in store.labelled_items("shared")}
    assert votes == {"first text": [("bob", "happy")]}
    assert {h["annotator"] for h in store.history("shared") if h["action"] == "label"} == {"bob"}


def test_one_caller_cannot_fill_the_queue(server):
    """Eight simultaneous analyses from one caller: at most ``MAX_PENDING`` are taken; a
    second caller is still served meanwhile."""
    visitor = client(server, VISITOR)
    example = str(ROOT / "examples" / "speech_happy.wav")
    from gradio_client import handle_file
    outcomes = []

    def call():
        try:
            visitor.predict(handle_file(example), api_name="/audio")
            outcomes.append("served")
        except Exception as exc:  # noqa: BLE001 - the refusal is what is counted
            outcomes.append(str(exc))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    other = client(server, BOB).predict("What a lovely day", False, api_name="/text")
    for t in threads:
        t.join()
    assert other[4]["label"] and outcomes.count("served") <= access.MAX_PENDING < len(outcomes)
    assert outcomes.count("served") >= 1


# --- the browser: two people at once ----------------------------------------------------------------

@needs_chromium
@pytest.mark.browser
def test_each_signed_in_person_sees_the_tabs_of_their_role(server):
    with chromium_browser() as browser:
        annotator = open_page(browser, server[0], sign_in=ALICE)
        admin = open_page(browser, server[0], sign_in=ROOT_USER)
        annotator.locator("#signed-in").filter(has_text="alice (annotator)").wait_for()
        admin.locator("#signed-in").filter(has_text="root (admin)").wait_for()
        admin.get_by_role("tab", name="Fine-tune").wait_for()
        annotator.get_by_role("tab", name="Annotate").wait_for()
        assert annotator.get_by_role("tab", name="Fine-tune").count() == 0
        annotator.get_by_role("tab", name="Models").click()
        assert not annotator.locator("#activate-btn").is_visible()
        admin.get_by_role("tab", name="Models").click()
        admin.locator("#activate-btn").wait_for()


def test_a_space_with_hugging_face_sign_in_offers_the_login_button(monkeypatch):
    import app as app_module
    monkeypatch.setenv("SPACE_ID", "team/emotion")
    monkeypatch.setenv("SYSTEM", "spaces")  # how Gradio itself knows it runs on a Space
    monkeypatch.setenv("OAUTH_CLIENT_ID", "client-id")
    for name, value in (("OAUTH_CLIENT_ID", "client-id"), ("OAUTH_CLIENT_SECRET", "secret"),
                        ("OAUTH_SCOPES", "openid profile"), ("OPENID_PROVIDER_URL", "https://huggingface.co")):
        monkeypatch.setattr(f"gradio.oauth.{name}", value)  # what a Space with hf_oauth sets before start-up
    demo = app_module.build_app()
    assert any(isinstance(block, gr.LoginButton) for block in demo.blocks.values())
    refused_private = {fn.api_name for fn in demo.fns.values() if fn.api_name and fn.validator is not None}
    assert {"activate", "finetune_activate", "finetune_rollback", "annotate_export", "annotate_import"} <= refused_private
    # what is sent to annotation is kept, so on such a Space it must be someone's: an anonymous
    # visitor may analyse but not send (the validator refuses before the upload is queued)
    profile = gr.OAuthProfile({"preferred_username": "di", "name": "Di", "profile": "", "picture": ""})
    for api_name in ("send_image", "send_audio", "send_video", "send_text", "image"):
        fn = next(fn for fn in demo.fns.values() if fn.api_name == api_name)
        values = [None] * len(fn.inputs)
        anonymous, signed_in = (fn.validator(*values, None, who) for who in (None, profile))
        anonymous, signed_in = ([v] if isinstance(v, dict) else v for v in (anonymous, signed_in))
        assert signed_in[0]["is_valid"], api_name
        if api_name == "image":
            assert anonymous[0]["is_valid"]
        else:
            assert not anonymous[0]["is_valid"] and anonymous[0]["message"].startswith("Sign in first: what you send")
        access.PENDING.give_back("user:di")
        access.PENDING.give_back("address:unknown")
