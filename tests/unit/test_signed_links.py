"""Signed preview links: valid for their one path until they expire, and not forgeable."""

from media_service.control.signed_links import LinkSigner, cluster_key

PATH = "/v1/streams/news/preview.mjpg"


def parts(query: str) -> tuple[str, str]:
    fields = dict(kv.split("=", 1) for kv in query.split("&"))
    return fields["exp"], fields["sig"]


def test_a_link_opens_its_path_until_it_expires():
    signer = LinkSigner(ttl_s=300)
    query, expires = signer.sign(PATH, now=1000.0)
    assert expires == 1300
    exp, sig = parts(query)
    assert signer.verify(PATH, exp, sig, now=1299.0)
    assert not signer.verify(PATH, exp, sig, now=1301.0)


def test_a_link_does_not_open_another_path_or_survive_edits():
    signer = LinkSigner()
    exp, sig = parts(signer.sign(PATH, now=1000.0)[0])
    assert not signer.verify("/v1/streams/other/preview.mjpg", exp, sig, now=1000.0)
    assert not signer.verify(PATH, str(int(exp) + 3600), sig, now=1000.0)  # stretched expiry
    assert not signer.verify(PATH, exp, sig[:-1] + ("1" if sig.endswith("0") else "0"), now=1000.0)
    assert not signer.verify(PATH, "soon", sig, now=1000.0)


def test_each_process_has_its_own_key():
    exp, sig = parts(LinkSigner().sign(PATH, now=1000.0)[0])
    assert not LinkSigner().verify(PATH, exp, sig, now=1000.0)  # a restart voids old links


def test_replicas_sharing_a_token_open_each_others_links():
    exp, sig = parts(LinkSigner(cluster_key("shared-api-token-1234")).sign(PATH, now=1000.0)[0])
    assert LinkSigner(cluster_key("shared-api-token-1234")).verify(PATH, exp, sig, now=1000.0)
    assert not LinkSigner(cluster_key("another-api-token-5678")).verify(PATH, exp, sig, now=1000.0)
    assert "shared-api-token-1234" not in sig and cluster_key("shared-api-token-1234") != b"shared-api-token-1234"
