"""Shared by the online-trainer tests: four toy "characters" as font medians and the folder
(``medians.json.gz``, ``chars.txt``) the synthetic character data is drawn from."""

import gzip
import json

import pytest

TOY = {  # font medians, 1024 em square, y up like hanzi-writer
    "一": [[[150, 450], [500, 460], [870, 450]]],
    "二": [[[250, 650], [750, 650]], [[120, 250], [880, 250]]],
    "十": [[[120, 450], [880, 450]], [[500, 850], [500, 450], [500, 50]]],
    "口": [[[200, 750], [200, 150]], [[200, 750], [800, 750], [800, 150]], [[200, 150], [800, 150]]],
}
CHARS = "".join(TOY)


@pytest.fixture(scope="module")
def hanzi(tmp_path_factory):
    d = tmp_path_factory.mktemp("hanzi")
    with gzip.open(d / "medians.json.gz", "wt", encoding="utf-8") as f:
        json.dump(TOY, f)
    (d / "chars.txt").write_text(CHARS + "\n", encoding="utf-8")
    return d
