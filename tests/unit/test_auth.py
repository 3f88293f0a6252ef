"""The auth file's format and the token helpers (trainship.auth, trainship.serving.auth_file)."""

from __future__ import annotations

import pytest

from trainship import auth

A = auth.digest("tsk_a")
B = auth.digest("tsk_b")
S = auth.digest("tsk_smoke")


def test_new_tokens_are_prefixed_random_and_long() -> None:
    first, second = auth.new_token(), auth.new_token()
    assert first.startswith("tsk_") and second.startswith("tsk_")
    assert first != second
    assert len(first) >= 4 + 43  # 32 random bytes, base64url


def test_digest_is_sha256_hex() -> None:
    assert auth.digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_parse_reads_every_kind_with_comments_and_blank_lines() -> None:
    text = f"# model auth\n\ntoken {A}\npending {B}  # not delivered\nsmoke {S} 1700000000\n"
    parsed = auth.parse(text)
    assert not parsed.open
    assert parsed.entries == (auth.Entry("token", A), auth.Entry("pending", B),
                              auth.Entry("smoke", S, 1700000000.0))


def test_render_and_parse_round_trip() -> None:
    value = auth.AuthFile(entries=(auth.Entry("token", A), auth.Entry("smoke", S, 1700000000.0)))
    assert auth.parse(auth.render(value)) == value
    assert auth.parse(auth.render(auth.open_file())) == auth.open_file()
    assert auth.render(auth.open_file()) == "none\n"


def test_an_empty_file_lets_nobody_in() -> None:
    empty = auth.parse("# nothing\n")
    assert empty == auth.AuthFile()
    assert not auth.allows(empty, "tsk_a", 0.0)
    assert not auth.allows(empty, None, 0.0)


@pytest.mark.parametrize("text", [
    "tokn " + A,                    # unknown kind
    "token",                        # no digest
    f"token {A} extra",             # too many fields
    "token " + "z" * 64,            # not hex
    "token " + A.upper(),           # hex, but not as written
    f"smoke {S}",                   # no expiry
    f"smoke {S} soon",              # expiry not a number
    f"none\ntoken {A}",             # open and guarded at once
])
def test_parse_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        auth.parse(text)


def test_allows_an_open_url_without_a_token() -> None:
    assert auth.allows(auth.open_file(), None, 0.0)
    assert auth.allows(auth.open_file(), "anything", 0.0)


def test_allows_the_token_and_the_pending_one_only() -> None:
    guarded = auth.parse(f"token {A}\n")
    assert auth.allows(guarded, "tsk_a", 0.0)
    assert not auth.allows(guarded, "tsk_b", 0.0)
    assert not auth.allows(guarded, None, 0.0)
    assert not auth.allows(guarded, "", 0.0)
    assert auth.allows(auth.parse(f"pending {B}\n"), "tsk_b", 0.0)


def test_a_smoke_token_works_until_it_expires() -> None:
    guarded = auth.parse(f"token {A}\nsmoke {S} 1000\n")
    assert auth.allows(guarded, "tsk_smoke", 999.0)
    assert not auth.allows(guarded, "tsk_smoke", 1000.0)
    assert auth.allows(guarded, "tsk_a", 5000.0)  # the model token never expires


def test_with_token_replaces_the_token_keeps_smoke_and_closes_an_open_url() -> None:
    first = auth.with_token(auth.open_file(), A, pending=True)
    assert not first.open
    assert first.entries == (auth.Entry("pending", A),)
    smoked = auth.with_smoke(first, S, 2000.0, now=1000.0)
    replaced = auth.with_token(smoked, B, pending=False)
    assert replaced.entries == (auth.Entry("token", B), auth.Entry("smoke", S, 2000.0))
    assert not auth.allows(replaced, "tsk_a", 0.0)
    assert auth.allows(replaced, "tsk_b", 0.0)


def test_with_smoke_prunes_expired_smoke_entries_and_leaves_an_open_url_open() -> None:
    old = auth.with_smoke(auth.parse(f"token {A}\n"), B, 500.0, now=0.0)
    new = auth.with_smoke(old, S, 2000.0, now=1000.0)
    assert new.entries == (auth.Entry("token", A), auth.Entry("smoke", S, 2000.0))
    assert auth.with_smoke(auth.open_file(), S, 2000.0, now=0.0) == auth.open_file()


def test_without_drops_a_digest() -> None:
    guarded = auth.parse(f"token {A}\nsmoke {S} 2000\n")
    assert auth.without(guarded, S).entries == (auth.Entry("token", A),)


def test_delivered_and_has_token() -> None:
    pending = auth.with_token(auth.AuthFile(), A, pending=True)
    assert auth.has_token(pending) and not auth.delivered(pending)
    delivered = auth.with_token(pending, A, pending=False)
    assert auth.has_token(delivered) and auth.delivered(delivered)
    smoke_only = auth.with_smoke(auth.AuthFile(), S, 10.0, now=0.0)
    assert not auth.has_token(smoke_only) and not auth.delivered(smoke_only)
    assert not auth.has_token(auth.open_file())
