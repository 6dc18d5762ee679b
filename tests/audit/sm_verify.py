#!/usr/bin/env python3
"""Independent SM3 (GB/T 32905) and SM2 signature verification (GB/T 32918.2, recommended curve of
GB/T 32918.5), in pure Python with no OpenSSL, so a Waygate audit bundle signed under the sm suite can be
checked by code that shares nothing with the gateway's crypto library.

Importable: sm3(data) -> 32 bytes, hmac_sm3(key, data) -> 32 bytes (RFC 2104, block 64), sm2_z(pub, ident),
sm2_verify(pub, msg, sig_der, ident=DEFAULT_ID) -> bool, sm2_public(d) (test helper: the public point of a
private scalar). Public keys are the uncompressed point (65 bytes: 04 | x | y); signatures DER SEQUENCE{r, s}.

Run as a program it self-tests: the standards' SM3 examples, the GB/T 32918.2 Appendix A signature (its example
curve and identifier), signatures made by the openssl CLI (`pkeyutl -sign -rawin -digest sm3 -pkeyopt
distid:1234567812345678`) when the CLI is present, and forged signatures refused. Exit status 0 = all pass.

Not constant-time. sm2_sign exists for tests that build audit chains of known shape (with a
test key); it checks against the standard's own example (its k) and is never part of a product.
"""
import struct
import sys

DEFAULT_ID = b"1234567812345678"

# ---------------------------------------------------------------- SM3 (GB/T 32905-2016)
_IV = (0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600, 0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E)
_M32 = 0xFFFFFFFF


def _rotl(x, n):
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _M32 if n else x


def _p0(x):
    return x ^ _rotl(x, 9) ^ _rotl(x, 17)


def _p1(x):
    return x ^ _rotl(x, 15) ^ _rotl(x, 23)


def _compress(v, block):
    w = list(struct.unpack(">16I", block))
    for j in range(16, 68):
        w.append(_p1(w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)) ^ _rotl(w[j - 13], 7) ^ w[j - 6])
    w1 = [w[j] ^ w[j + 4] for j in range(64)]
    a, b, c, d, e, f, g, h = v
    for j in range(64):
        t = 0x79CC4519 if j < 16 else 0x7A879D8A
        ss1 = _rotl((_rotl(a, 12) + e + _rotl(t, j)) & _M32, 7)
        ss2 = ss1 ^ _rotl(a, 12)
        if j < 16:
            ff = a ^ b ^ c
            gg = e ^ f ^ g
        else:
            ff = (a & b) | (a & c) | (b & c)
            gg = (e & f) | (~e & _M32 & g)
        tt1 = (ff + d + ss2 + w1[j]) & _M32
        tt2 = (gg + h + ss1 + w[j]) & _M32
        d, c, b, a = c, _rotl(b, 9), a, tt1
        h, g, f, e = g, _rotl(f, 19), e, _p0(tt2)
    return tuple(x ^ y for x, y in zip((a, b, c, d, e, f, g, h), v))


def sm3(data):
    """SM3 digest of data (bytes): 32 bytes."""
    data = bytes(data)
    bitlen = len(data) * 8
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack(">Q", bitlen)
    v = _IV
    for i in range(0, len(padded), 64):
        v = _compress(v, padded[i:i + 64])
    return struct.pack(">8I", *v)


def hmac_sm3(key, data):
    """HMAC (RFC 2104) over SM3, block size 64 bytes: 32 bytes."""
    key = bytes(key)
    if len(key) > 64:
        key = sm3(key)
    key = key.ljust(64, b"\x00")
    inner = sm3(bytes(k ^ 0x36 for k in key) + bytes(data))
    return sm3(bytes(k ^ 0x5C for k in key) + inner)


# ---------------------------------------------------------------- curves
class Curve:
    def __init__(self, p, a, b, n, gx, gy):
        self.p, self.a, self.b, self.n, self.g = p, a, b, n, (gx, gy)

    def on_curve(self, pt):
        x, y = pt
        return 0 <= x < self.p and 0 <= y < self.p and (y * y - x * x * x - self.a * x - self.b) % self.p == 0

    def add(self, p1, p2):
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        (x1, y1), (x2, y2) = p1, p2
        if x1 == x2 and (y1 + y2) % self.p == 0:
            return None
        if p1 == p2:
            lam = (3 * x1 * x1 + self.a) * pow(2 * y1, -1, self.p) % self.p
        else:
            lam = (y2 - y1) * pow(x2 - x1, -1, self.p) % self.p
        x3 = (lam * lam - x1 - x2) % self.p
        return (x3, (lam * (x1 - x3) - y1) % self.p)

    # Jacobian coordinates (X, Y, Z) for (X/Z^2, Y/Z^3): no inversion per step; None = infinity.
    def _jdouble(self, P):
        if P is None:
            return None
        X, Y, Z = P
        p = self.p
        if Y == 0:
            return None
        YY = Y * Y % p
        S = 4 * X * YY % p
        M = (3 * X * X + self.a * pow(Z, 4, p)) % p
        X3 = (M * M - 2 * S) % p
        return (X3, (M * (S - X3) - 8 * YY * YY) % p, 2 * Y * Z % p)

    def _jadd(self, P, Q):
        if P is None:
            return Q
        if Q is None:
            return P
        p = self.p
        X1, Y1, Z1 = P
        X2, Y2, Z2 = Q
        Z1Z1, Z2Z2 = Z1 * Z1 % p, Z2 * Z2 % p
        U1, U2 = X1 * Z2Z2 % p, X2 * Z1Z1 % p
        S1, S2 = Y1 * Z2 * Z2Z2 % p, Y2 * Z1 * Z1Z1 % p
        if U1 == U2:
            return self._jdouble(P) if S1 == S2 else None
        H, R = (U2 - U1) % p, (S2 - S1) % p
        HH = H * H % p
        HHH = H * HH % p
        X3 = (R * R - HHH - 2 * U1 * HH) % p
        return (X3, (R * (U1 * HH - X3) - S1 * HHH) % p, H * Z1 * Z2 % p)

    def _affine(self, P):
        if P is None:
            return None
        X, Y, Z = P
        zi = pow(Z, -1, self.p)
        zi2 = zi * zi % self.p
        return (X * zi2 % self.p, Y * zi2 * zi % self.p)

    def mul_add(self, k1, p1, k2, p2):
        """k1*p1 + k2*p2 (affine points in and out; None = infinity), Shamir's trick."""
        j1 = (p1[0], p1[1], 1)
        j2 = (p2[0], p2[1], 1)
        both = self._jadd(j1, j2)
        acc = None
        for i in range(max(k1.bit_length(), k2.bit_length()) - 1, -1, -1):
            acc = self._jdouble(acc)
            b1, b2 = (k1 >> i) & 1, (k2 >> i) & 1
            if b1 and b2:
                acc = self._jadd(acc, both)
            elif b1:
                acc = self._jadd(acc, j1)
            elif b2:
                acc = self._jadd(acc, j2)
        return self._affine(acc)

    def mul(self, k, pt):
        return self.mul_add(k, pt, 0, pt)


def _h(s):
    return int(s.replace(" ", ""), 16)


# GB/T 32918.5-2017: the recommended 256-bit curve (the one every SM2 key of the gateway uses).
SM2P256 = Curve(
    _h("FFFFFFFE FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF 00000000 FFFFFFFF FFFFFFFF"),
    _h("FFFFFFFE FFFFFFFF FFFFFFFF FFFFFFFF FFFFFFFF 00000000 FFFFFFFF FFFFFFFC"),
    _h("28E9FA9E 9D9F5E34 4D5A9E4B CF6509A7 F39789F5 15AB8F92 DDBCBD41 4D940E93"),
    _h("FFFFFFFE FFFFFFFF FFFFFFFF FFFFFFFF 7203DF6B 21C6052B 53BBF409 39D54123"),
    _h("32C4AE2C 1F198119 5F990446 6A39C994 8FE30BBF F2660BE1 715A4589 334C74C7"),
    _h("BC3736A2 F4F6779C 59BDCEE3 6B692153 D0A9877C C62A4740 02DF32E5 2139F0A0"),
)


# ---------------------------------------------------------------- SM2 signature verification (GB/T 32918.2)
def _int32(x):
    return x.to_bytes(32, "big")


def _point(pub, curve):
    """The uncompressed point 04|x|y as (x, y), or None if malformed or not on the curve."""
    pub = bytes(pub)
    if len(pub) != 65 or pub[0] != 4:
        return None
    pt = (int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big"))
    return pt if curve.on_curve(pt) else None


def sm2_z(pub, ident=DEFAULT_ID, curve=SM2P256):
    """Z_A = SM3(ENTL_A | ID_A | a | b | x_G | y_G | x_A | y_A) (GB/T 32918.2 5.5)."""
    pt = _point(pub, curve)
    if pt is None:
        raise ValueError("public key: not an uncompressed point on the curve")
    entl = (len(ident) * 8).to_bytes(2, "big")
    return sm3(entl + ident + _int32(curve.a) + _int32(curve.b) + _int32(curve.g[0]) + _int32(curve.g[1]) +
               _int32(pt[0]) + _int32(pt[1]))


def _der_len(buf, i):
    if i >= len(buf):
        return None, i
    n = buf[i]
    i += 1
    if n < 0x80:
        return n, i
    k = n & 0x7F
    if k == 0 or k > 2 or i + k > len(buf):
        return None, i
    n = int.from_bytes(buf[i:i + k], "big")
    if n < 0x80 or (k == 2 and n < 0x100):
        return None, i  # not the shortest (DER) length form
    return n, i + k


def _der_int(buf, i):
    if i >= len(buf) or buf[i] != 0x02:
        return None, i
    n, i = _der_len(buf, i + 1)
    if n is None or n == 0 or i + n > len(buf):
        return None, i
    body = buf[i:i + n]
    if body[0] & 0x80 or (n > 1 and body[0] == 0 and not body[1] & 0x80):
        return None, i  # negative, or not minimal
    return int.from_bytes(body, "big"), i + n


def der_decode_sig(sig):
    """(r, s) from a DER SEQUENCE{INTEGER r, INTEGER s}, strictly (nothing trailing), or None."""
    sig = bytes(sig)
    if len(sig) < 8 or sig[0] != 0x30:
        return None
    n, i = _der_len(sig, 1)
    if n is None or i + n != len(sig):
        return None
    r, i = _der_int(sig, i)
    if r is None:
        return None
    s, i = _der_int(sig, i)
    if s is None or i != len(sig):
        return None
    return r, s


def der_encode_sig(r, s):
    """DER SEQUENCE{r, s} (test helper: builds forged signatures)."""
    def one(x):
        b = x.to_bytes((x.bit_length() + 8) // 8 or 1, "big")
        return b"\x02" + bytes([len(b)]) + b
    body = one(r) + one(s)
    return b"\x30" + bytes([len(body)]) + body


def sm2_verify_rs(pub, msg, r, s, ident=DEFAULT_ID, curve=SM2P256):
    """GB/T 32918.2 7.1 over M' = Z_A | M with e = SM3(M')."""
    n = curve.n
    pt = _point(pub, curve)
    if pt is None or not (1 <= r < n and 1 <= s < n):
        return False
    e = int.from_bytes(sm3(sm2_z(pub, ident, curve) + bytes(msg)), "big")
    t = (r + s) % n
    if t == 0:
        return False
    x1y1 = curve.mul_add(s, curve.g, t, pt)
    if x1y1 is None:
        return False
    return (e + x1y1[0]) % n == r


def sm2_verify(pub, msg, sig_der, ident=DEFAULT_ID, curve=SM2P256):
    """True iff sig_der (DER r,s) is a valid SM2 signature of msg by pub (65-byte point) with identifier."""
    rs = der_decode_sig(sig_der)
    return rs is not None and sm2_verify_rs(pub, msg, rs[0], rs[1], ident, curve)


def sm2_sign(d, msg, ident=DEFAULT_ID, curve=SM2P256, k=None):
    """A DER SM2 signature of msg by private scalar d (GB/T 32918.2 6.1); k random unless given.
    Test helper only (not constant-time)."""
    import secrets
    n = curve.n
    e = int.from_bytes(sm3(sm2_z(sm2_public(d, curve), ident, curve) + bytes(msg)), "big")
    while True:
        kk = k if k is not None else secrets.randbelow(n - 1) + 1
        r = (e + curve.mul(kk, curve.g)[0]) % n
        s = pow(1 + d, -1, n) * (kk - r * d) % n
        if r != 0 and r + kk != n and s != 0:
            return der_encode_sig(r, s)
        if k is not None:
            raise ValueError("k unusable")


def sm2_public(d, curve=SM2P256):
    """The uncompressed public point of private scalar d (test helper)."""
    x, y = curve.mul(d, curve.g)
    return b"\x04" + _int32(x) + _int32(y)


# ---------------------------------------------------------------- self-tests
def _check(name, ok):
    print(("ok   " if ok else "FAIL ") + name)
    return ok


def _selftest_sm3():
    ok = _check("SM3 GB/T 32905 example 1 ('abc')", sm3(b"abc").hex() ==
                "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
    ok &= _check("SM3 GB/T 32905 example 2 ('abcd' x 16)", sm3(b"abcd" * 16).hex() ==
                 "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732")
    return ok


# GB/T 32918.2-2016 Appendix A.2: the example 256-bit curve, ID "ALICE123@YAHOO.COM", M "message digest".
_EXAMPLE = Curve(
    _h("8542D69E 4C044F18 E8B92435 BF6FF7DE 45728391 5C45517D 722EDB8B 08F1DFC3"),
    _h("787968B4 FA32C3FD 2417842E 73BBFEFF 2F3C848B 6831D7E0 EC65228B 3937E498"),
    _h("63E4C6D3 B23B0C84 9CF84241 484BFE48 F61D59A5 B16BA06E 6E12D1DA 27C5249A"),
    _h("8542D69E 4C044F18 E8B92435 BF6FF7DD 29772063 0485628D 5AE74EE7 C32E79B7"),
    _h("421DEBD6 1B62EAB6 746434EB C3CC315E 32220B3B ADD50BDC 4C4E6C14 7FEDD43D"),
    _h("0680512B CBB42C07 D47349D2 153B70C4 E5D7FDFC BFA36EA1 A85841B9 E46E09A2"),
)
_EX_D = _h("128B2FA8 BD433C6C 068C8D80 3DFF7979 2A519A55 171B1B65 0C23661D 15897263")
_EX_X = "0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"
_EX_Y = "7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857"
_EX_Z = "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
_EX_K = _h("6CB28D99 385C175C 94F94E93 4817663F C176D925 DD72B727 260DBAAE 1FB2F96F")
_EX_R = _h("40F1EC59 F793D9F4 9E09DCEF 49130D41 94F79FB1 EED2CAA5 5BACDB49 C4E755D1")
_EX_S = _h("6FC6DAC3 2C5D5CF1 0C77DFB2 0F7C2EB6 67A45787 2FB09EC5 6327A67E C7DEEBE7")
_EX_ID = b"ALICE123@YAHOO.COM"
_EX_M = b"message digest"


def _selftest_standard():
    pub = sm2_public(_EX_D, _EXAMPLE)
    ok = _check("SM2 A.2 public key from d", pub.hex().upper() == "04" + _EX_X + _EX_Y)
    ok &= _check("SM2 A.2 Z_A", sm2_z(pub, _EX_ID, _EXAMPLE).hex().upper() == _EX_Z)
    ok &= _check("SM2 A.2 signature verifies", sm2_verify_rs(pub, _EX_M, _EX_R, _EX_S, _EX_ID, _EXAMPLE))
    ok &= _check("SM2 A.2 signature over another message refused",
                 not sm2_verify_rs(pub, b"message digesT", _EX_R, _EX_S, _EX_ID, _EXAMPLE))
    ok &= _check("SM2 A.2 signature under another identifier refused",
                 not sm2_verify_rs(pub, _EX_M, _EX_R, _EX_S, DEFAULT_ID, _EXAMPLE))
    ok &= _check("SM2 A.2 signing with the standard's k gives its (r, s)",
                 der_decode_sig(sm2_sign(_EX_D, _EX_M, _EX_ID, _EXAMPLE, k=_EX_K)) == (_EX_R, _EX_S))
    sig = sm2_sign(0xABCDEF, b"m")
    ok &= _check("SM2 sign then verify (recommended curve, random k)",
                 sm2_verify(sm2_public(0xABCDEF), b"m", sig) and
                 not sm2_verify(sm2_public(0xABCDEF), b"n", sig))
    ok &= _check("SM2 A.2 s+1 refused", not sm2_verify_rs(pub, _EX_M, _EX_R, _EX_S + 1, _EX_ID, _EXAMPLE))
    return ok


def _openssl_cases(tmp):
    """(public key point, message, DER signature) triples made by the openssl CLI, or [] without one."""
    import os
    import shutil
    import subprocess
    exe = shutil.which("openssl")
    if exe is None:
        return []
    key = os.path.join(tmp, "k.pem")
    subprocess.run([exe, "genpkey", "-algorithm", "SM2", "-out", key], check=True, capture_output=True)
    text = subprocess.run([exe, "pkey", "-in", key, "-noout", "-text"], check=True, capture_output=True,
                          text=True).stdout
    hexes = []
    grab = False
    for line in text.splitlines():
        if line.startswith("pub:"):
            grab = True
            continue
        if grab:
            if not line.startswith(" "):
                break
            hexes.append(line.strip().replace(":", ""))
    pub = bytes.fromhex("".join(hexes))
    out = []
    for i, msg in enumerate([b"", b"abc", b"waygate audit checkpoint " * 9]):
        mf = os.path.join(tmp, "m%d" % i)
        sf = os.path.join(tmp, "s%d" % i)
        with open(mf, "wb") as f:
            f.write(msg)
        subprocess.run([exe, "pkeyutl", "-sign", "-inkey", key, "-rawin", "-digest", "sm3", "-pkeyopt",
                        "distid:" + DEFAULT_ID.decode(), "-in", mf, "-out", sf], check=True, capture_output=True)
        with open(sf, "rb") as f:
            out.append((pub, msg, f.read()))
    return out


def _selftest_openssl():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        cases = _openssl_cases(tmp)
    if not cases:
        print("skip openssl CLI signatures (no openssl on PATH)")
        return True
    ok = True
    for pub, msg, sig in cases:
        ok &= _check("openssl-signed SM2 over %d bytes verifies" % len(msg), sm2_verify(pub, msg, sig))
        ok &= _check("  same signature with the wrong identifier refused",
                     not sm2_verify(pub, msg, sig, ident=b"1234567812345679"))
        ok &= _check("  same signature over a changed message refused", not sm2_verify(pub, msg + b"x", sig))
        r, s = der_decode_sig(sig)
        ok &= _check("  forged r refused", not sm2_verify(pub, msg, der_encode_sig((r + 1) % SM2P256.n, s)))
        ok &= _check("  forged s refused", not sm2_verify(pub, msg, der_encode_sig(r, (s ^ 1) % SM2P256.n)))
        ok &= _check("  (r, n - s) refused", not sm2_verify(pub, msg, der_encode_sig(r, SM2P256.n - s)))
        ok &= _check("  trailing byte after DER refused", not sm2_verify(pub, msg, sig + b"\x00"))
        other = sm2_public(0x1234567 + len(msg))
        ok &= _check("  another public key refused", not sm2_verify(other, msg, sig))
    return ok


def _selftest_hmac_openssl():
    """HMAC-SM3 against `openssl mac` (a cross-check, not a reference: the SM3 underneath is checked above)."""
    import shutil
    import subprocess
    exe = shutil.which("openssl")
    if exe is None:
        print("skip HMAC-SM3 cross-check (no openssl on PATH)")
        return True
    ok = True
    for key, data in [(b"key", b"abc"), (bytes(range(32)), b"waygate" * 20), (bytes(range(100)), b"")]:
        got = subprocess.run([exe, "mac", "-digest", "SM3", "-macopt", "hexkey:" + key.hex(), "HMAC"],
                             input=data, check=True, capture_output=True).stdout.decode().strip().lower()
        ok &= _check("HMAC-SM3 key %d bytes, data %d bytes = openssl mac" % (len(key), len(data)),
                     got == hmac_sm3(key, data).hex())
    return ok


def selftest():
    ok = _selftest_sm3()
    ok &= _selftest_hmac_openssl()
    ok &= _check("HMAC-SM3 differs from SM3 of key|data", hmac_sm3(b"k", b"d") != sm3(b"kd"))
    ok &= _selftest_standard()
    g = SM2P256.g
    ok &= _check("Jacobian arithmetic agrees with the affine formulas",
                 SM2P256.mul_add(5, g, 7, SM2P256.add(g, g)) ==
                 SM2P256.add(SM2P256.mul(8, g), SM2P256.mul(11, g)) and
                 SM2P256.mul(SM2P256.n, g) is None and SM2P256.mul(SM2P256.n - 1, g) ==
                 (g[0], SM2P256.p - g[1]))
    ok &= _check("a zero signature (0, 0) refused",
                 not sm2_verify(sm2_public(7), b"m", der_encode_sig(0, 0)))
    ok &= _check("a signature (r, s) = (n, 1) refused",
                 not sm2_verify(sm2_public(7), b"m", der_encode_sig(SM2P256.n, 1)))
    ok &= _selftest_openssl()
    return ok


def main(argv):
    if len(argv) >= 2 and argv[1] == "sm3":
        data = sys.stdin.buffer.read() if len(argv) == 2 else open(argv[2], "rb").read()
        print(sm3(data).hex())
        return 0
    if len(argv) == 4 and argv[1] == "hmac-sm3":
        print(hmac_sm3(bytes.fromhex(argv[2]), bytes.fromhex(argv[3])).hex())
        return 0
    ok = selftest()
    print("all passed" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
