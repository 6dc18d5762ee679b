#!/usr/bin/python3
"""sm_vectors.py: the independent computation behind test_crypto.c's sm-suite known answers.

Pure Python, no OpenSSL: SM3 (GB/T 32905), SM4 (GB/T 32907), HMAC (RFC 2104) over SM3, and the
gateway's sm sealing construction (crypto.h: SM4-CTR + HMAC-SM3, k_enc and k_mac derived from the whole key). It
checks itself against the standards' examples, then prints the constants test_crypto.c embeds:
  /usr/bin/python3 tests/unit/sm_vectors.py
With --check FILE (ctest sm_vectors) it prints nothing and fails unless every value it computes
appears in FILE (test_crypto.c), so the C constants cannot drift from this computation.
Test-only (the product never hand-writes a primitive); slow and not constant-time by design.
"""
import struct
import sys


def rotl(x, n):
    n %= 32
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


# ---- SM3 (GB/T 32905-2016) ----
SM3_IV = [0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600,
          0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E]


def _p0(x):
    return x ^ rotl(x, 9) ^ rotl(x, 17)


def _p1(x):
    return x ^ rotl(x, 15) ^ rotl(x, 23)


def _cf(v, block):
    w = list(struct.unpack(">16I", block))
    for j in range(16, 68):
        w.append(_p1(w[j - 16] ^ w[j - 9] ^ rotl(w[j - 3], 15)) ^ rotl(w[j - 13], 7) ^ w[j - 6])
    w1 = [w[j] ^ w[j + 4] for j in range(64)]
    a, b, c, d, e, f, g, h = v
    for j in range(64):
        t = 0x79CC4519 if j < 16 else 0x7A879D8A
        ss1 = rotl((rotl(a, 12) + e + rotl(t, j)) & 0xFFFFFFFF, 7)
        ss2 = ss1 ^ rotl(a, 12)
        if j < 16:
            ff = a ^ b ^ c
            gg = e ^ f ^ g
        else:
            ff = (a & b) | (a & c) | (b & c)
            gg = (e & f) | (~e & g)
        tt1 = (ff + d + ss2 + w1[j]) & 0xFFFFFFFF
        tt2 = (gg + h + ss1 + w[j]) & 0xFFFFFFFF
        d, c, b, a = c, rotl(b, 9), a, tt1
        h, g, f, e = g, rotl(f, 19), e, _p0(tt2)
    return [x ^ y for x, y in zip(v, [a, b, c, d, e, f, g, h])]


def sm3(msg):
    m = msg + b"\x80" + b"\x00" * ((55 - len(msg)) % 64) + struct.pack(">Q", 8 * len(msg))
    v = SM3_IV
    for i in range(0, len(m), 64):
        v = _cf(v, m[i:i + 64])
    return struct.pack(">8I", *v)


def hmac_sm3(key, data):
    if len(key) > 64:
        key = sm3(key)
    key = key.ljust(64, b"\x00")
    ipad = bytes(k ^ 0x36 for k in key)
    opad = bytes(k ^ 0x5C for k in key)
    return sm3(opad + sm3(ipad + data))


# ---- SM4 (GB/T 32907-2016) ----
SBOX = bytes.fromhex(
    "d690e9fecce13db716b614c228fb2c052b679a762abe04c3aa44132649860699"
    "9c4250f491ef987a33540b43edcfac62e4b31ca9c908e89580df94fa758f3fa6"
    "4707a7fcf37317ba83593c19e6854fa8686b81b27164da8bf8eb0f4b70569d35"
    "1e240e5e6358d1a225227c3b01217887d40046579fd3275 24c3602e7a0c4c89e".replace(" ", "")
    + "eabf8ad240c738b5a3f7f2cef96115a1e0ae5da49b341a55ad933230f58cb1e3"
    "1df6e22e8266ca60c02923ab0d534e6fd5db3745defd8e2f03ff6a726d6c5b51"
    "8d1baf92bbddbc7f11d95c411f105ad80ac13188a5cd7bbd2d74d012b8e5b4b0"
    "8969974a0c96777e65b9f109c56ec68418f07dec3adc4d2079ee5f3ed7cb3948")
FK = [0xA3B1BAC6, 0x56AA3350, 0x677D9197, 0xB27022DC]
CK = [struct.unpack(">I", bytes(((4 * i + j) * 7) & 0xFF for j in range(4)))[0] for i in range(32)]


def _tau(x):
    return struct.unpack(">I", bytes(SBOX[b] for b in struct.pack(">I", x)))[0]


def _round_keys(key):
    k = [x ^ f for x, f in zip(struct.unpack(">4I", key), FK)]
    for i in range(32):
        b = _tau(k[i + 1] ^ k[i + 2] ^ k[i + 3] ^ CK[i])
        k.append(k[i] ^ b ^ rotl(b, 13) ^ rotl(b, 23))
    return k[4:]


def sm4_block(key, block, rk=None):
    rk = rk or _round_keys(key)
    x = list(struct.unpack(">4I", block))
    for i in range(32):
        b = _tau(x[i + 1] ^ x[i + 2] ^ x[i + 3] ^ rk[i])
        x.append(x[i] ^ b ^ rotl(b, 2) ^ rotl(b, 10) ^ rotl(b, 18) ^ rotl(b, 24))
    return struct.pack(">4I", x[35], x[34], x[33], x[32])


def sm4_ctr(key, iv, data):
    rk = _round_keys(key)
    ctr = int.from_bytes(iv, "big")
    out = bytearray()
    for i in range(0, len(data), 16):
        ks = sm4_block(key, ctr.to_bytes(16, "big"), rk)
        out += bytes(a ^ b for a, b in zip(data[i:i + 16], ks))
        ctr = (ctr + 1) % (1 << 128)
    return bytes(out)


# ---- the gateway's sm sealing (crypto.h) ----
def sm_subkeys(key):
    """crypto.h: k_enc = HMAC-SM3(key, enc label)[0..16), k_mac = HMAC-SM3(key, mac label)."""
    return hmac_sm3(key, b"waygate-sm-enc-v1")[:16], hmac_sm3(key, b"waygate-sm-mac-v1")


def sm_seal(key, nonce, aad, pt):
    k_enc, k_mac = sm_subkeys(key)
    head = bytes([1, 2]) + nonce
    ct = sm4_ctr(k_enc, nonce + b"\x00" * 4, pt)
    tag = hmac_sm3(k_mac, head + struct.pack(">Q", len(aad)) + aad + ct)[:16]
    return head + ct + tag


def content_mac(key, items):
    """crypto.h's content MAC encoding under HMAC-SM3; items: (name, value or None)."""
    m = b"waygate-content-v1" + struct.pack(">I", len(items))
    for name, value in items:
        m += struct.pack(">I", len(name)) + name
        if value is None:
            m += b"\x00"
        else:
            m += b"\x01" + struct.pack(">Q", len(value)) + value
    return hmac_sm3(key, m)


def self_test():
    # GB/T 32905 Appendix A: "abc" and the 64-byte example
    assert sm3(b"abc").hex() == \
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3(b"abcd" * 16).hex() == \
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    # GB/T 32907 Appendix A example 1 (one block) and example 2 (10^6 encryptions: slow, skipped
    # unless --long)
    k = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert sm4_block(k, k).hex() == "681edf34d206965e86b3e94f536e4246"
    if "--long" in sys.argv:
        rk, b = _round_keys(k), k
        for _ in range(1000000):
            b = sm4_block(k, b, rk)
        assert b.hex() == "595298c7c6fd271f0402f804c33d3f66"


def c_hex(b):
    return '"' + b.hex() + '"'


def main():
    self_test()
    out = []
    print = out.append  # noqa: A001 (collects the lines; printed or checked below)
    print("/* self-test passed: SM3 abc, SM3 64-byte, SM4 Appendix A example 1 */")
    # HMAC-SM3: key lengths 16, 32 (gateway keys, the derivations), 4 and 131 (longer than a
    # block)
    cases = [
        (bytes(range(1, 17)), b"waygate hmac-sm3 k_mac"),
        (bytes([0x0B]) * 32, b"Hi There"),
        (b"Jefe".ljust(20, b"\x00")[:4], b"what do ya want for nothing?"),
        (bytes([0xAA]) * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),
    ]
    for key, data in cases:
        print("HMAC-SM3 key=%s data=%s -> %s" % (key.hex(), data, hmac_sm3(key, data).hex()))
    key = bytes(range(0x20, 0x40))
    k_enc, k_mac = sm_subkeys(key)
    print("SM subkeys k_enc -> %s" % k_enc.hex())
    print("SM subkeys k_mac -> %s" % k_mac.hex())
    nonce = bytes.fromhex("000102030405060708090a0b")
    aad = b"waygate-field-v1 test aad"
    for pt in (b"", b"13800138000", bytes((i * 7 + 3) & 0xFF for i in range(70))):
        print("SM seal pt=%d -> %s" % (len(pt), sm_seal(key, nonce, aad, pt).hex()))
    big = bytes((i * 7 + 3) & 0xFF for i in range(1500))
    items = [(b"name", "\u5f20\u4e09".encode()), (b"absent", None), (b"empty", b""),
             (b"big", big), (b"tail", b"z")]
    print("content MAC (sm) -> %s" % content_mac(bytes([0x55]) * 32, items).hex())
    if "--check" in sys.argv:
        text = open(sys.argv[sys.argv.index("--check") + 1]).read()
        text = "".join(text.split('"\n'))  # join the C string literals split across lines
        text = "".join(part.strip() for part in text.split('"'))
        missing = [line for line in out[1:] if line.split(" -> ")[1] not in text]
        for line in missing:
            sys.stdout.write("not in %s: %s\n" % (sys.argv[-1], line))
        sys.exit(1 if missing else 0)
    for line in out:
        sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
