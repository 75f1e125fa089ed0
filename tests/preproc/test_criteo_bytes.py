"""Pins the bytes of every file the Criteo path writes.

The expected digests were computed by the code before the feature spec
existed (``metadata.json``'s after its inputs gained modification times and
fingerprints). A change to any output file of the Criteo path (ids, dtypes, file
names, JSON keys or their order, rejects) fails here; a deliberate format
change updates the digests and the format version together. Files added
since then (``feature_spec.yaml``) are checked by the contract tests, not here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from preproc import cli
from tools.generate_criteo import generate

# Files added after the digests were taken; every other file must be listed below.
_ADDED_FILES = {"feature_spec.yaml"}
# Timings and peak memory vary between runs: checked by value, not by bytes.
_SUMMARY = "preproc_summary.json"

_BAD_LINES = (
    b"1\t2\t3\n"  # field_count
    b"x" + b"\t" * 39 + b"\n"  # bad_label
    b"\n"  # empty_line
)

_MTIME_NS = 1_700_000_000_123_456_789
# (rows, day files (0: one train.txt), seed) of the generated input.
_GENERATED = {"days": (600, 2, 11), "fraction": (400, 0, 12)}
# Options of each case: several units and shuffle buckets; input order and a fraction split.
CASES = {
    "days": [
        "--frequency_threshold", "2", "--unit_mb", "0.01", "--shuffle_bucket_rows", "150",
        "--seed", "7",
    ],
    "fraction": ["--frequency_threshold", "3", "--no_shuffle", "--test_fraction", "0.2"],
}  # fmt: skip


def _write_inputs(kind: str) -> list[str]:
    """Generated rows (fixed seed) plus a few malformed lines; relative paths so
    that ``metadata.json`` (which records the input paths) does not depend on
    the test's temporary directory."""
    rows, days, seed = _GENERATED[kind]
    paths = generate("raw", rows, days, seed=seed)
    with open(paths[0], "ab") as f:
        f.write(_BAD_LINES)
    for path in paths:  # metadata.json records the inputs' modification times
        os.utime(path, ns=(_MTIME_NS, _MTIME_NS))
    return [os.path.relpath(p) for p in paths]


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in _ADDED_FILES and rel != _SUMMARY:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _run(kind: str, tmp_path: Path, monkeypatch, capsys) -> tuple[list[str], Path]:
    monkeypatch.chdir(tmp_path)
    inputs = _write_inputs(kind)
    argv = ["--input_files", *inputs, "--output_dir", "out", "--num_workers", "1", *CASES[kind]]
    assert cli.main(argv) == 0
    capsys.readouterr()
    return inputs, tmp_path / "out"


EXPECTED_INPUTS: dict[str, dict[str, str]] = {
    "days": {
        "raw/day_0": ("540b100154e5b55ac3b111e5549591bc69a5b4cb1b6cc7cf741dbdcb7b02f5de"),
        "raw/day_1": ("87854449241ab083b77cb977fa078f4fb5456748e30e1daa47bf40af3d88b6b8"),
    },
    "fraction": {
        "raw/train.txt": ("6ac05f62e2299324c07781c824a5d8ab4ee0611942e8fdd3aa16123cc743bc27"),
    },
}
EXPECTED: dict[str, dict[str, str]] = {
    "days": {
        "metadata.json": ("f342186e6c2a5f76b3596f6120f0747e0eab5931bb819d1cad4406584bb15af2"),
        "model_size.json": ("f220c69b83b4e3d9dfa0953471809ddab36dadef7208c1617be5e51ee0ae22fc"),
        "rejects.tsv": ("aee2ab2eb604ee90ca996b0da4855c7ff357d218d2385b2f773d1152b65859d7"),
        "test/cat_0.bin": ("8b35d6d7b71c26ffa1bef1ad5ff7f06e4aeaed781abd1ec746b15ba510363f79"),
        "test/cat_1.bin": ("a9fd7b4967662e7c30b74134354b4c574f87f19ecc4127a8f94b743f77212543"),
        "test/cat_10.bin": ("712710c3b7a0925f3a27636ffcb9f40d9d0f61f46b989aee42189339a28e563c"),
        "test/cat_11.bin": ("cb1636a11a939bdd4c8c3d74ada4f38866c9c2df1beb698c92198467d79ec67e"),
        "test/cat_12.bin": ("56066b5a1a7ce66f7875d0b5872b1a03e3c7c490b4c30061f32f47783df03b4f"),
        "test/cat_13.bin": ("d8a45a15ad813fff4a3640d3cba804b087604cdad12c3c8caf0c60d852ca60bd"),
        "test/cat_14.bin": ("888ba936934a679e2f3d273cc7a6a426dbd306428f1d333e28116708a431251a"),
        "test/cat_15.bin": ("f8c4fdef301eaa4676a5951ce74ed4e5d2715b405cd42a572f74099409db5e61"),
        "test/cat_16.bin": ("3479b2b40eca6b1953b59a209add8ae8d3aa54eea2580d14d2bf62aa5ced4b9c"),
        "test/cat_17.bin": ("ac318c5b095ca79f740bbeb91ab1b38bb59929eb0d7e2b130307718a0e02ada3"),
        "test/cat_18.bin": ("8f7d77f6ea2527dfda8cd6acbede7b68b6e578cd9f0ccefcd2419b1eb7e31334"),
        "test/cat_19.bin": ("82d1f2e5fc82a422891b606692307639ef5ce64cf7197cf2d5237dfda108d0f7"),
        "test/cat_2.bin": ("dfc184e69923ff19664f404055b384b45bc464f223a0e61f53eb984dc75c9916"),
        "test/cat_20.bin": ("eca8d49af63f6853f9b05d4176296f754d8e97562a7095e43fd6a67f14be1948"),
        "test/cat_21.bin": ("d60a47a2013e8c398b7328394c721d48dc06bc6876953cd976b77ffe84eb6494"),
        "test/cat_22.bin": ("ead44bfa57d043d589fa9dfed963466e97b3b703d005243a938bd4585636ef30"),
        "test/cat_23.bin": ("7dece1657688464a21ea0f8ccb4b37f97c0b66ac8875bf79a4539e91445136ac"),
        "test/cat_24.bin": ("8785c9174f329833e3a2d667d04d0385a2cc93598c7a536c0f4be6b43623fd3c"),
        "test/cat_25.bin": ("253e528522ac6319789364da2c08082dbf8aee3f09a2fd563495890ed653ac62"),
        "test/cat_3.bin": ("626e03742a122f4babd86fa4a06a625f362b8625b538ed1fbb44b3a16be3ea37"),
        "test/cat_4.bin": ("8710c86dc1098fc5ebb6b9cd304c08f1f1f69a626b29a0c08d5002e788276903"),
        "test/cat_5.bin": ("4a941927f1cc9ea66fa9ecc7f64e30fcf4738841e5f58a2a2c956084acb708b4"),
        "test/cat_6.bin": ("3909dbb05c26952a125621abad9adf08e5e6b77454d80e456e6de821453e2295"),
        "test/cat_7.bin": ("cc1606fca5a936aee9fb56b55fd8c7220b0bc74e1fddd9d48bb1ea815d7721fd"),
        "test/cat_8.bin": ("1fcdce763cc6c09127bbc6b528c838e3fc81cc55b654d93676ee56bb830b6fd4"),
        "test/cat_9.bin": ("c587825db0aa5247a30dddd96e3dd6dbeed6a76650df4d55350a8f1a80bf2bc2"),
        "test/label.bin": ("b9d573c39694f975798faccbbbc45594c29c78c4591bf38e29b5ad57e4804e56"),
        "test/numerical.bin": ("4c992ed1515b42b845e72f992b13e3540c30ce2733edccbc001fdcfd7abfca03"),
        "train/cat_0.bin": ("37d448b57d93f4062802ecb2dc2385cb0e871a66d03e1e454d8523cc54e428ad"),
        "train/cat_1.bin": ("17e766dc875079ffaa1d6566b0075341cd1c1d32074c7ccd813a1082b79a5801"),
        "train/cat_10.bin": ("3dbadce31fdf9981c0d6b3cee641c33f8b0e7f293e291f3ca57ce8ffd1ded411"),
        "train/cat_11.bin": ("46d44c907d79a3b10fc2e65a82e8a366527787b6b5f1a58d718b24f85e2326e2"),
        "train/cat_12.bin": ("fd1ccbf2112851f703079031bc2b20d4d9bec43f5d72a3dd44d726aa192710cf"),
        "train/cat_13.bin": ("8a8bb5672deb0934b45ac9c5b648d126afca98a9cc71424bd637cfca054aa1f6"),
        "train/cat_14.bin": ("ba2b7b8b1ebbb5d7015955c60b8c5eb1fbb75a0559d6704dca7c5399185a3082"),
        "train/cat_15.bin": ("a595a303425fa4f927c2338fe18274df26bb7c9e102cb63fdd62568933ec16c6"),
        "train/cat_16.bin": ("f34358e8e12967601a67fae87bed7aed7cd7e199e8803b5afd8c1a73d2159a6b"),
        "train/cat_17.bin": ("851fa3b6a90c385589744931f747c8ba61cb83fcf1f27c82cc17b37fb309038b"),
        "train/cat_18.bin": ("daf07330a80e8e7ae69e68b763d05a14791e7149e57ca0fc9f33995c63ca7be1"),
        "train/cat_19.bin": ("123856610387c3d56dd8bd09399ca4a91411c55658964319742a6cbfd29aacf1"),
        "train/cat_2.bin": ("07cb63b7c4e9767c0fafaaa97195ef852cdf76f7700c4eef9888126b702f5715"),
        "train/cat_20.bin": ("7c9a3e447e91017e0c51496607de041d61c1bf47552d4ac20fb27cbcbd8a6961"),
        "train/cat_21.bin": ("f3968c425277f9801a11c44d0af82b96f2713d83ea9add5a9821c7342cdb7ff9"),
        "train/cat_22.bin": ("7e3af78cdfbe91b5b3da86c3e8a107ebd79f86b775c95e71610b58fc6ff46621"),
        "train/cat_23.bin": ("a2e299e4d726af2f36fbb6447498f7809b99bb87219b4f4d85b5e66b1058ff41"),
        "train/cat_24.bin": ("44c5cb26a620aef3887a3fcc47a802e9bd3b224e148ab689fccf1a8e9af96954"),
        "train/cat_25.bin": ("e0671f901e968d50c71a313b34d92f7920d78f0cc73a1163d769314d04328827"),
        "train/cat_3.bin": ("c4d653527f99cadd5af6c2aa58d676e5308ba137b18efb427ef7b59ac0815f06"),
        "train/cat_4.bin": ("8840958ed36633864361b696c8824010ba12c15d0afbf24cfa42cd8dc83c7681"),
        "train/cat_5.bin": ("343f6624d6a081130282e4782db82c805f44b7b25bd7aa3e8de9f0174088c961"),
        "train/cat_6.bin": ("b50a58cfb19cab7a52906949e2d475503c4601c199145a6bb74e8908ea0a76b9"),
        "train/cat_7.bin": ("3472c667b9664bf6b293c5ace00a9f0c952e54247b02644e205dcb3ffcfd5976"),
        "train/cat_8.bin": ("9ab839a77378d71d7e6262265c81a12129e4666ecb88b9729167719ec480b5ac"),
        "train/cat_9.bin": ("8825e8d0ec1488732d13a7f1aadd45084e645415b4d1b4e49698e698a17b3fbf"),
        "train/label.bin": ("53fcb680a84bba1bb5dd5422846745f3101c782cadcb492265e89206c7c2f886"),
        "train/numerical.bin": ("cdb33e43d42d38ee676dfb7dc85e00bd65c6acdab2e05118dd129ef7472f55f1"),
        "validation/cat_0.bin": (
            "e4c1e7dc2c8112204e8993f0af7c0dc7da17c9b3a0cb1a165b13615d2b82c55c"
        ),
        "validation/cat_1.bin": (
            "c14ea3db481391ef7bb6f68ccc5345ab5d8f490807ad3653888691c9995b04d8"
        ),
        "validation/cat_10.bin": (
            "853fbeb0ece1e4a86e2b86d5e8f11d7a253e3f9e15b7d3692c292027a989dacd"
        ),
        "validation/cat_11.bin": (
            "d14927f57ca2422608df66b68b3c4affab87d1695c80b05f236568dab18d3dd9"
        ),
        "validation/cat_12.bin": (
            "0583eaf578714e5773380bc0654732a4338099508ddc3d9a767e1bf93827e7e8"
        ),
        "validation/cat_13.bin": (
            "ec237a82d4662255286fceb4023c76377b1fdbdc6dde0a708491c842e12f8b4b"
        ),
        "validation/cat_14.bin": (
            "499d6729a6f4ff7bfad7100e6ce5091f90141b050cb5e656c3d671b3815d7c7b"
        ),
        "validation/cat_15.bin": (
            "35f673f09b01922d56acb5be38408bd0ff1550121a70000446d672fcb82f397a"
        ),
        "validation/cat_16.bin": (
            "c1ad9d0cc3c0f0b04f26f108263c88010fa11ea2f546668692349ac28a70e2d8"
        ),
        "validation/cat_17.bin": (
            "753c85cb5e8358d506cf47d34e4ca626d06690f6c1ea9765aab668d57f20a393"
        ),
        "validation/cat_18.bin": (
            "b93eda9858f8e2809461f36feab0c261e73f9ee8447cdb5ccf4f2a5eea7090f6"
        ),
        "validation/cat_19.bin": (
            "65c8814304b9489f7380d702f073c6ffe8cccb48b9ab27288cbc0d7c27645054"
        ),
        "validation/cat_2.bin": (
            "2c301561a78c126eaa535050ab20c79a1af3a9b9a11c3dbb3228a74c933ee720"
        ),
        "validation/cat_20.bin": (
            "d5ec50cd05c5b1db4ffd83551d3872f2f7293e7515fa75e5f4f215324dff5425"
        ),
        "validation/cat_21.bin": (
            "ac9bd670b3b0ed9359cfb9e613f15542d6de8cc1f91c1203c7a4757f373a6c27"
        ),
        "validation/cat_22.bin": (
            "581563dd528d9913ebd9cdf59a94cca1c892a795a67072a646445d2719283d2f"
        ),
        "validation/cat_23.bin": (
            "eb36ad5419afc9db965952381e52a9d4ab195a481991d1ad542acc45996955b2"
        ),
        "validation/cat_24.bin": (
            "59cc3efb81a31ecc73fb003ad91909c560673ac42a4c68701bb72f08b8d9c26f"
        ),
        "validation/cat_25.bin": (
            "6562ee34bfdb46add30a2ee8987b6a339570f1a1cd6ed8b4bb855e3416917ddc"
        ),
        "validation/cat_3.bin": (
            "e5af411546a427538d2d70d7cd1a703b4cc560aedfa08e1167780645d037233a"
        ),
        "validation/cat_4.bin": (
            "d0cb1ba75ef5172b05139502b95a8168c98596b745117bbfe25b92fe9a0f33dc"
        ),
        "validation/cat_5.bin": (
            "32a9a1d2bb29b5849450186e17a1d433d8e3b34fad23b57056b4cf0f83134344"
        ),
        "validation/cat_6.bin": (
            "f217d9533213a19870b0b0796d4e9429f831619f305bc7d4e1b2bd14d6e47572"
        ),
        "validation/cat_7.bin": (
            "70d08132f29093c342b6737cab5da04a3d6141dfb0cc9cd737ae742194892ee1"
        ),
        "validation/cat_8.bin": (
            "06406b8528686d7cd8418ae9e3d549bd43948f4a640c9cf16d213b27fa3338c8"
        ),
        "validation/cat_9.bin": (
            "ba621390b8edf0a6da9a694743aee2eae5af66eb8fb2636fe5a8bd996a38e909"
        ),
        "validation/label.bin": (
            "8c7dcf17609cd8e5cb745a07629eddccbccdef052ed34cd96385361650a35f07"
        ),
        "validation/numerical.bin": (
            "45e4660ad64299053240405821b857be4a3f8d29c1942490d71a7dc39a5058d3"
        ),
        "vocab/cat_0.npy": ("58a343c3d05918c9ad68b3c6d40104ec11079b27be2cd38e4c6e910218e82f62"),
        "vocab/cat_1.npy": ("06a9dffcbb9775e1a1112e4f6e5c0dd03fa8a4cb356927e86e0ddf5fe8e6a6fc"),
        "vocab/cat_10.npy": ("9e2cd579ca66729ddf22bfd74a417446ab2cdddca30856b92e312bf082a51e8e"),
        "vocab/cat_11.npy": ("5d1571a1f516af19b1aaab6716d8d56b62a43a0d036ca6363c90ed6d3f32da3e"),
        "vocab/cat_12.npy": ("ae56c44a4149855808f3547e610c1a139b3ad7a45c1ab7add2c4f0d4568945c4"),
        "vocab/cat_13.npy": ("ff19d7cfa21315c98944e781c8607cab3e98e1a6c78ea97932a11bdb1aaa2cf5"),
        "vocab/cat_14.npy": ("c2003d2ca2f45aef839bccedaedece5281191ee3dcca060def797380f5f5284e"),
        "vocab/cat_15.npy": ("b00cce909a2aad2ea5aea8d01b11ccf066c1be2ee768c858b71965559a5cc392"),
        "vocab/cat_16.npy": ("85c332e51513750bc2cc03fd2c5e6bbf493411884ff939dc81d7bb0567deff97"),
        "vocab/cat_17.npy": ("21ddb8cb178a1ac589224abe769de35615a6ce4fdba7539c04e3ae3b08b6f4d8"),
        "vocab/cat_18.npy": ("5e1a1fd1cc0388b2d7cd66adb11c4bdb373063dfae81af15169d3ce7edfd92c8"),
        "vocab/cat_19.npy": ("7bff3fa051bbf770a5f3e9ee646f8d50ef21df04ccd7c301dc6fd6a9649b2be1"),
        "vocab/cat_2.npy": ("1a6c648ad6ed006c412e8e89cbb625cb6eb250d29ac91e2f8cc9b21197c7af89"),
        "vocab/cat_20.npy": ("820352d7f8c41002af214d0d47d22280c16c8fd48a1568ac9dce09fa3b4308a0"),
        "vocab/cat_21.npy": ("e0675c0ea032a62f9bee59dcb68edea753cafd9acc28219bfc6cab3ecc1f381f"),
        "vocab/cat_22.npy": ("4936a1585445802314815e6164bb48487c5198f9f60f37fbfd75c0ecb031ea46"),
        "vocab/cat_23.npy": ("130432e524fceec086d0ee39fa3d02e17f4c0dfc75a991e6dd7271e85f5d4c86"),
        "vocab/cat_24.npy": ("2f8fe0cdf5d2db5302789f4c4e3a4fd16e728b8e971121751a7ccd4e34365424"),
        "vocab/cat_25.npy": ("73c583f3d1f795f9d49af184c14c57b1abf50df80cee5006b6a41d4b4e0f6bdf"),
        "vocab/cat_3.npy": ("b6bf028d77650890dcabec07cd58b8568ff87524caf3b084acd78befdb94bb44"),
        "vocab/cat_4.npy": ("9f468bda89f20dbb75e26a5ca1da869728082de2e1729a9717dc4284aa2cf996"),
        "vocab/cat_5.npy": ("8047a9e90feb9d671df339b06777b5464684b2a2b42b269443a147d74428ea4a"),
        "vocab/cat_6.npy": ("30364f2f8566af5977baccad9b14b21733737c26ce6218b6679faf8fdf49c3e4"),
        "vocab/cat_7.npy": ("bca31b4ca17493d6afe39af6911d4e24765ef92938db865b696c4d639d9d7c89"),
        "vocab/cat_8.npy": ("22be4ed34913bd05e6b8f4ffb5128d2e9e4e5db87ef92c4c70fa42789d0f48c1"),
        "vocab/cat_9.npy": ("902730271366881679c7f6bff60f203a19c7876fd9e46d36209af60b42eb6b2d"),
    },
    "fraction": {
        "metadata.json": ("7369ce8cb037c185eb8484b13bebe28682429c71fe6e2fc2700a2e47b35afd38"),
        "model_size.json": ("4812e8e1ec948c10bb7d3d54f6bd768a221ab924e2733fffcb89fffb9b3bd39f"),
        "rejects.tsv": ("e13812878d2532166ffe50234965fcf0e8f18dce6aad9ced201eabc9b94909ba"),
        "test/cat_0.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_1.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_10.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_11.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_12.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_13.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_14.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_15.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_16.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_17.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_18.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_19.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_2.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_20.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_21.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_22.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_23.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_24.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_25.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_3.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_4.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_5.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_6.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_7.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_8.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/cat_9.bin": ("5b6fb58e61fa475939767d68a446f97f1bff02c0e5935a3ea8bb51e6515783d8"),
        "test/label.bin": ("e0c7cfe8eae5e14b005f0b5163994120a349029ecfce87b4643695a3a7d69fae"),
        "test/numerical.bin": ("616bf3bf5c21372585dc285764845556cf6f51fd6c9f8ba8a13a7aef59848ca3"),
        "train/cat_0.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_1.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_10.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_11.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_12.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_13.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_14.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_15.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_16.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_17.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_18.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_19.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_2.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_20.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_21.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_22.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_23.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_24.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_25.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_3.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_4.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_5.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_6.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_7.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_8.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/cat_9.bin": ("7b6436b0c98f62380866d9432c2af0ee08ce16a171bda6951aecd95ee1307d61"),
        "train/label.bin": ("039bb32e690570d8dd047b46453583e7501551b61525e7e3f51798ac5e426946"),
        "train/numerical.bin": ("ae17f6c4c96b69b5c7267e69756c5407247b0d0955447114108abdafccf085c1"),
        "validation/cat_0.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_1.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_10.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_11.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_12.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_13.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_14.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_15.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_16.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_17.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_18.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_19.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_2.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_20.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_21.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_22.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_23.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_24.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_25.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_3.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_4.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_5.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_6.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_7.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_8.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/cat_9.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/label.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "validation/numerical.bin": (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ),
        "vocab/cat_0.npy": ("d6b01546d55af820f935ec0d7a1750bd71cd4597b4ef401a33f93c8cc3492789"),
        "vocab/cat_1.npy": ("ce86b24700e3dfaaa6d2757b963aab6d83144b653626afe44165bffabf111dda"),
        "vocab/cat_10.npy": ("689dfd7712928ebbdfd9ec9d1635d8eb1112d5ba64686f13fd28cb68158afb41"),
        "vocab/cat_11.npy": ("29097fb5cd919009a866650c90e76d0cd2eb00f50cb04e04985df8f231be0f58"),
        "vocab/cat_12.npy": ("f263295ec6f7ef295fb31f289106a1a6c1d5e7464bc79d8bfd2c22a7c4d8b370"),
        "vocab/cat_13.npy": ("837124b1ec30b1a4c1b8dd7fc32555b706c8311baf8260f885f6138cab74a229"),
        "vocab/cat_14.npy": ("c403923fb77d60c77603341ce8d7fdcd8f6b945e1b09aff047e4921320b9982e"),
        "vocab/cat_15.npy": ("4b658165f4df25f9215098e700f1ca2a9030ca361b21a8d7a30244520c9ad6ff"),
        "vocab/cat_16.npy": ("819f441bfc7e8d028f27b8e658c1cc10116d587d3997283f9f2bbc990d7791b0"),
        "vocab/cat_17.npy": ("076204115addd7f7d6ef15c20fbb124da7012f865f7fc5c6807ffb4e38ce0d99"),
        "vocab/cat_18.npy": ("0acb87377d8ebc41828ae3aaea584d865f2495c786908c665dc5caed2bfcc974"),
        "vocab/cat_19.npy": ("54c83b33b83f56c637036e57ed86c1dd03a3f713940ca94ddeb8edaa89e7a6e7"),
        "vocab/cat_2.npy": ("620a622aa3ba9afb0863396f88a1e2e20cd0aa03ac68ddfd4b03860c267671ad"),
        "vocab/cat_20.npy": ("35dacb1dde35e27496992b1bb42d55b1d3c1863b487560b979b53f9583e1f806"),
        "vocab/cat_21.npy": ("a55618299b4ebdfd1e73129252ddf87856150a3df8cf137aa9fd274fad9e481d"),
        "vocab/cat_22.npy": ("3878a6949fa70c1c8ac23a5a98c973581a70dfbf3372d9e46dc0a78892879d45"),
        "vocab/cat_23.npy": ("a4810761b890aabd06b196ead3cc36c504fe79b5f04e2c2a380cde310b378589"),
        "vocab/cat_24.npy": ("a33bd45bc88d4fd565bc6c851a11f43e3a31eb40e243421435b354597cec4e44"),
        "vocab/cat_25.npy": ("e30dbd27ca042260f54a3c107cc9659a51b6adfa7657342f66097bbf6ababf91"),
        "vocab/cat_3.npy": ("48ffa6526157cf6904d58f23ac75078aa36f15cf8532b18f266f30b9e8e457f5"),
        "vocab/cat_4.npy": ("aefcc7f6053dd35215ee3cdf4f53f8fdfd2e56132e8fa4fe4b7040fc3fde5fcd"),
        "vocab/cat_5.npy": ("f9af39f1bac2d84f0995a92a0374814e115d4c7b0d8472be8e0f1aa02f6d197a"),
        "vocab/cat_6.npy": ("13186c321fd231b12306776eba357c9cc6a55c9da7d820f3a9d90d2aca392854"),
        "vocab/cat_7.npy": ("866511b31cc0e3c802067feedafe6780bd665d29319723a29d1051753e616edf"),
        "vocab/cat_8.npy": ("fa4997b24c6b0f8ccbafb2cdbbfd5cef070b164da497245bcccf5e0aefd113f8"),
        "vocab/cat_9.npy": ("1b195dc80603c1364be314de025ad2115d5f888216e3e15723a094ea5e231542"),
    },
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_criteo_output_bytes_are_unchanged(kind, tmp_path, monkeypatch, capsys):
    inputs, root = _run(kind, tmp_path, monkeypatch, capsys)
    got_inputs = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in inputs}
    # A failure here means tools/generate_criteo changed, not the preprocessing.
    assert got_inputs == EXPECTED_INPUTS[kind]
    assert _digests(root) == EXPECTED[kind]
    summary = json.loads((root / _SUMMARY).read_text())
    metadata = json.loads((root / "metadata.json").read_text())
    assert summary["rows_read"] == metadata["rows_read"]
    assert summary["rows_per_split"] == metadata["rows"]
    assert summary["rows_rejected"] == metadata["rows_rejected"]
    assert sum(metadata["rows_rejected"].values()) == 3
