"""Golden vectors for match-key normalisation: (field, input, default country, normalised, SHA-256).

The digests were computed with hashlib from the normalised strings, independently of pinsignal.
"""

from __future__ import annotations

import hashlib

import pytest

from pinsignal.pipeline.normalise import (
    HASHED_FIELDS,
    hash_match_key,
    is_sha256,
    match_key_hasher,
    normalise,
    sha256_hex,
)

HASHED = hashlib.sha256(b"jane.doe@example.com").hexdigest()  # an already hashed input

VECTORS = [
    ('em', ' Jane.Doe@Example.com ', 'US', 'jane.doe@example.com',
     HASHED),
    ('em', 'JOHN@EXAMPLE.ORG', 'US', 'john@example.org',
     'b5fb79bc07fa24049f99f456f8f530af1cb9a13db14c4b02c83be7c1f0ceb968'),
    ('em', '\tuser+tag@Sub.Example.co.uk\n', 'US', 'user+tag@sub.example.co.uk',
     '4df456f48860b2e9bb6d4405552fe5086efa6c2db2d5dc2886cd002d90b125ae'),
    ('em', 'müller@beispiel.de', 'US', 'müller@beispiel.de',
     'c62998b86c6530f9b01ee6441e472369a7a263a350b9a9742a02a65a27925b5b'),
    ('em', 'not-an-email', 'US', None,
     None),
    ('em', '', 'US', None,
     None),
    ('em', 'a@b', 'US', None,
     None),
    ('em', HASHED.upper(), 'US', HASHED,
     HASHED),
    ('ph', '+1 (415) 555-0123', 'US', '14155550123',
     '413ba75461ab5f99d36820e561ea97e2bd80f9cb586f7ecea6cf4c496518950a'),
    ('ph', '(415) 555-0123', 'US', '14155550123',
     '413ba75461ab5f99d36820e561ea97e2bd80f9cb586f7ecea6cf4c496518950a'),
    ('ph', '415.555.0123', 'US', '14155550123',
     '413ba75461ab5f99d36820e561ea97e2bd80f9cb586f7ecea6cf4c496518950a'),
    ('ph', '1-650-555-1234', 'US', '16505551234',
     '6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599'),
    ('ph', '+44 (0)20 7946 0958', 'US', '442079460958',
     '35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823'),
    ('ph', '0044 20 7946 0958', 'US', '442079460958',
     '35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823'),
    ('ph', '020 7946 0958', 'GB', '442079460958',
     '35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823'),
    ('ph', '+49 30 1234567', 'US', '49301234567',
     '2f9fbc550b12cbc0e6242384cc472bd1e4f058a8b773f189f7acb86d202655ce'),
    ('ph', '030 1234567', 'DE', '49301234567',
     '2f9fbc550b12cbc0e6242384cc472bd1e4f058a8b773f189f7acb86d202655ce'),
    ('ph', '+33 1 23 45 67 89', 'US', '33123456789',
     'c473fbda80d42b39ba327f6a8b30fc64390255128a1b9d411179454bb58e5ec7'),
    ('ph', '01 23 45 67 89', 'FR', '33123456789',
     'c473fbda80d42b39ba327f6a8b30fc64390255128a1b9d411179454bb58e5ec7'),
    ('ph', '+81 3-1234-5678', 'US', '81312345678',
     '62c407a403882b2b8611b5e7771a63fb7883984e4e25393e1ae4d218f5514610'),
    ('ph', '+91 98765 43210', 'US', '919876543210',
     '92b5072176e723878b5e06ff3ca61898e4eb74e8c46642a0f2db800b17364ab0'),
    ('ph', '+61 2 9876 5432', 'US', '61298765432',
     '034aa6733c7c81137c1e7f8f71e2f871211f06881b94d70b56a91f1838162121'),
    ('ph', '+39 06 1234 5678', 'US', '390612345678',
     '472e1123cd4e2f66f1df06bd488dc6135dab8f80cbfcc4af144d042c005f0fb2'),
    ('ph', '+55 11 91234-5678', 'US', '5511912345678',
     'eeff2a7b3fdffa242c44700da8293d40c64a070956a3cdac36a4553dd4786704'),
    ('ph', '447911123456', 'US', '447911123456',
     '40b5c38342a9c584ec707e8679b003f8c779c6aaa138c976ef94e049cc05208f'),
    ('ph', 14155550123, 'US', '14155550123',
     '413ba75461ab5f99d36820e561ea97e2bd80f9cb586f7ecea6cf4c496518950a'),
    ('ph', '12', 'US', None,
     None),
    ('ph', '555-0123', 'US', None,
     None),
    ('ph', '+1 415 555 0123', 'GB', '14155550123',
     '413ba75461ab5f99d36820e561ea97e2bd80f9cb586f7ecea6cf4c496518950a'),
    ('ph', '011 44 20 7946 0958', 'US', '442079460958',
     '35e206e5dec4c89b9e8b71b8c32724a5bb518483ac5a20c6617d738375b3b823'),
    ('ph', 'phone', 'US', None,
     None),
    ('ph', HASHED.upper(), 'US', HASHED,
     HASHED),
    ('fn', ' Jane ', 'US', 'jane',
     '81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2'),
    ('fn', 'ZOË', 'US', 'zoë',
     '2752b88686847fa5c86f47b94ce652b7b3f22a91c37617d451a4db9afa431450'),
    ('fn', 'Андрей', 'US', 'андрей',
     '6992dd2d09a63c039c93728fdceba18fccd4f16cabe2e0188e4dbd87fc1aca6d'),
    ('fn', '   ', 'US', None,
     None),
    ('ln', "O'Brien", 'US', "o'brien",
     '65b87174be3b1b122e2b0929f0b84888637d31a4a83bb96a860bcff411f5e668'),
    ('ln', 'García Márquez', 'US', 'garcía márquez',
     '036e1ce1018d8d118f3233156f651ac0e844371425539e1542a5466cb116a7e8'),
    ('ln', '山田', 'US', '山田',
     '5f34cd8399195fa23a32ace56c87f461adcbee99d90d9e60057f01684b3b46da'),
    ('ge', 'Female', 'US', 'f',
     '252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111'),
    ('ge', 'M', 'US', 'm',
     '62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a'),
    ('ge', 'woman', 'US', 'f',
     '252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111'),
    ('ge', 'non-binary', 'US', 'n',
     '1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9'),
    ('ge', 'prefer not to say', 'US', None,
     None),
    ('db', '1990-05-26', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', '19900526', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', '05/26/1990', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', '26/05/1990', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', '02/03/1990', 'US', '19900203',
     'de8dbdfc21186d2b8035ddbb9d51db9ac4b4919c79a6cda2350e852b7a2eb915'),
    ('db', '02/03/1990', 'GB', '19900302',
     'c739f9fc726f28d99bfb4c8a676d650c3b22fc83290d332391f439f57b234ad1'),
    ('db', '26.05.1990', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', 'May 26, 1990', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', '26 May 1990', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', '1990-05-26T00:00:00Z', 'US', '19900526',
     'd0cf9433a50859f0877a584f19306277aef4081821376a37fc7ade354fdcc189'),
    ('db', '1990-02-30', 'US', None,
     None),
    ('db', 'tomorrow', 'US', None,
     None),
    ('ct', 'Menlo Park', 'US', 'menlopark',
     '0007a3d64c01e23d5075203c5977c14e4f7e01a3fc570686fcc50b5e1dd42685'),
    ('ct', 'St. Louis', 'US', 'stlouis',
     '8ba24bdf99947996f3000259be455de791b06fcc0e802ce05031030df1ee8ea3'),
    ('ct', 'Winston-Salem', 'US', 'winstonsalem',
     '9e54909cf7a66751ffbdfb4f79635e6d36de413d76f86c5ef42cb8b697662751'),
    ('ct', 'São Paulo', 'US', 'sãopaulo',
     '3eda1428ae1aece064071f8d40f08fe2bc59ffa66c171a163caf15122ec4d7f0'),
    ('ct', 'NEW YORK', 'US', 'newyork',
     '350c754ba4d38897693aa077ef43072a859d23f613443133fecbbd90a3512ca5'),
    ('ct', f'  {HASHED.upper()} ', 'US', HASHED,
     HASHED),
    ('st', 'California', 'US', 'ca',
     '6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126'),
    ('st', 'CA', 'US', 'ca',
     '6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126'),
    ('st', 'ny', 'US', 'ny',
     '1b06e2003f8420d6fa42badd8f77ec0f706b976b7a48b13c567dc5a559681683'),
    ('st', 'US-TX', 'US', 'tx',
     '1b5b9ccb3e8d006a5230de9bda23ff91edc794d4f56410560830b418528e446c'),
    ('st', 'Ontario', 'US', 'on',
     'b8d31e852725afb1e26d53bab6095b2bff1749c9275be13ed1c05a56ed31ec09'),
    ('st', 'New South Wales', 'US', 'nsw',
     'd3ef3c33db1fb92a87bc9b67e495a01e181a1c47c22e3aa32158e4500eeab448'),
    ('st', 'District of Columbia', 'US', 'dc',
     'abecdf3503635c0be9eca61cddf5b25c7f8380d5aae7d73d0f62e9a38c87b70d'),
    ('st', 'Atlantis Province', 'US', None,
     None),
    ('zp', '94025', 'US', '94025',
     'b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7'),
    ('zp', '94025-1234', 'US', '94025',
     'b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7'),
    ('zp', '940251234', 'US', '94025',
     'b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7'),
    ('zp', 'SW1A 1AA', 'GB', 'sw1a1aa',
     '830e1d4b9838bab1f5c2acdb23e0b502ff13a9832c4632e8d67a1d43d3b7f614'),
    ('zp', 'K1A 0B1', 'CA', 'k1a0b1',
     '3e8d74314dc02166b1ea8c7bd8c2357fb3f9898074395b8c57f8799848b4daa1'),
    ('zp', 94025, 'US', '94025',
     'b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7'),
    ('zp', '!!', 'US', None,
     None),
    ('country', 'US', 'US', 'us',
     '79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621'),
    ('country', 'United States', 'US', 'us',
     '79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621'),
    ('country', 'USA', 'US', 'us',
     '79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621'),
    ('country', 'Germany', 'US', 'de',
     '959a45d44e6fcf58361ed004681556fe50129f2109e817dec098c00c9e5d2578'),
    ('country', 'Deutschland', 'US', 'de',
     '959a45d44e6fcf58361ed004681556fe50129f2109e817dec098c00c9e5d2578'),
    ('country', 'gbr', 'US', 'gb',
     '0b407281768f0e833afef47ed464b6571d01ca4d53c12ce5c51d1462f4ad6677'),
    ('country', 'United Kingdom', 'US', 'gb',
     '0b407281768f0e833afef47ed464b6571d01ca4d53c12ce5c51d1462f4ad6677'),
    ('country', "Côte d'Ivoire", 'US', 'ci',
     '1b158839f8aa339e89bb50b1603e90ec68e0fd5565fe10a7cb32729fddf7070a'),
    ('country', 'Atlantis', 'US', None,
     None),
    ('external_id', ' U-42 ', 'US', 'u-42',
     '16ec525b74b75626eb93ecad8acc749885fcf4e83c95b139342769a4ab1828a3'),
    ('external_id', 42, 'US', '42',
     '73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049'),
    ('hashed_maids', 'EA7583CD-A667-48BC-B806-42ECB2B48606', 'US', 'ea7583cd-a667-48bc-b806-42ecb2b48606',
     '6cd6140c54b2741b81b0099b232a3ddaeed82df456f43563574877baec22b632'),
]


def test_there_are_enough_vectors_for_every_field() -> None:
    assert len(VECTORS) >= 60
    assert {field for field, *_ in VECTORS} == set(HASHED_FIELDS)
    assert sum(1 for field, *_ in VECTORS if field == "ph") >= 15


@pytest.mark.parametrize(("field", "value", "country", "normalised", "digest"), VECTORS)
def test_golden_vector(field: str, value: object, country: str, normalised: str | None, digest: str | None) -> None:
    assert normalise(field, value, default_country=country) == normalised
    assert hash_match_key(field, value, default_country=country) == digest
    assert match_key_hasher(field, default_country=country)(value) == digest
    if normalised is not None and digest is not None and not is_sha256(normalised):
        assert digest == hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def test_never_double_hashed_and_lowercase_hex() -> None:
    once = hash_match_key("em", "Jane@Example.com")
    assert once is not None and once == once.lower() and len(once) == 64
    assert hash_match_key("em", once) == once
    assert hash_match_key("em", once.upper()) == once


def test_unusable_types_are_dropped() -> None:
    for value in (None, True, 3.5, ["a@b.co"], {"email": "a@b.co"}):
        assert hash_match_key("em", value) is None


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(KeyError):
        normalise("click_id", "abc")


def test_sha256_hex_is_utf8() -> None:
    assert sha256_hex("zoë") == hashlib.sha256("zoë".encode()).hexdigest()


def test_the_hasher_remembers_digests_and_forgets_when_full() -> None:
    hasher = match_key_hasher("em")
    values = [f" Visitor.{n}@Example.com " for n in range(5000)] + ["not an email", "A" * 64]
    for _ in range(2):  # the second round is answered from memory (and past its size, forgotten)
        assert [hasher(value) for value in values] == [hash_match_key("em", value) for value in values]
    assert hasher("A" * 64) == "a" * 64 and hasher("not an email") is None
