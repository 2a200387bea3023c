"""The public datasets negrec knows: where each comes from, its terms, and how to prepare it.

A :class:`DatasetSpec` names the files to download (:class:`Source`: URL, checksums,
size), the data file(s) inside them, their format (one of
:data:`negrec.data.loaders.FORMATS`) and the preparation :class:`Recipe` (rating
threshold, k-core, split). ``negrec data list`` prints the registry, ``negrec data fetch
NAME`` downloads and prepares an entry (:mod:`negrec.data.fetch`), and ``negrec data
import NAME PATH`` prepares it from files the user already has.

Checksums. A download is verified against a pinned **sha256** where negrec knows one; the
pinned values were computed from byte-identical copies of the files (the project's
benchmark copies of the LightGCN, SimCE and SELFRec splits). Where the publisher only
publishes an **md5** (GroupLens does for MovieLens) that is checked instead. Where
neither is known offline, no checksum is invented: the first download that unpacks and
prepares is trusted, its sha256 is recorded in the cache (``checksums.json``) and printed,
and every later download of the same URL must match it ("trust on first use"; one that
fails to unpack or prepare is deleted, never recorded). A mismatch always stops with an
error and deletes the download; ``negrec data fetch NAME --rerecord-checksum`` records a
changed file anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from negrec.errors import NegrecError

SplitKind = Literal["given", "random", "leave_one_out"]
OnUnseen = Literal["error", "drop", "keep"]
OnOverlap = Literal["drop", "error", "keep"]


class UnknownDataset(NegrecError):
    """A dataset name that is not in the registry."""


@dataclass(frozen=True)
class Source:
    """One file to download: its URL, local file name, checksums and size (where known)."""

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None  # bytes, where known

    @property
    def pinned(self) -> str:
        """How this download is verified, in words."""
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.md5:
            return f"md5 {self.md5} (published by the source)"
        return "no pinned checksum: sha256 recorded on first download"


@dataclass(frozen=True)
class Recipe:
    """How raw events become the prepared dataset, and the split the papers use.

    ``min_rating`` and ``k_core`` are applied when preparing (see
    :func:`negrec.data.prepare.prepare`). ``split`` says how to evaluate: ``"given"``
    (the files are already train / test), ``"random"`` (a random ``test_fraction`` of each
    user's items) or ``"leave_one_out"`` (each user's last item). For ``"given"`` splits
    ``on_unseen`` says what to do with test users / items absent from train, and
    ``on_overlap`` with test pairs that repeat a training pair.
    """

    min_rating: float | None = None
    k_core: int | None = None
    split: SplitKind = "random"
    test_fraction: float = 0.2
    on_unseen: OnUnseen = "error"
    on_overlap: OnOverlap = "drop"

    def describe(self) -> str:
        """One line, e.g. ``rating >= 4, 10-core, random 80/20 per user``."""
        parts = []
        parts.append("all ratings" if self.min_rating is None else f"rating >= {self.min_rating:g}")
        parts.append("no k-core" if self.k_core is None else f"{self.k_core}-core")
        if self.split == "given":
            split = "given train/test split"
            if self.on_unseen != "error":
                split += f" (test users/items unseen in train: {self.on_unseen})"
            if self.on_overlap != "drop":
                split += f" (test pairs repeating a train pair: {self.on_overlap})"
        elif self.split == "leave_one_out":
            split = "leave-one-out (each user's last item is test)"
        else:
            train = round(100 * (1 - self.test_fraction))
            split = f"random {train}/{100 - train} per user"
        parts.append(split)
        return ", ".join(parts)


@dataclass(frozen=True)
class DatasetSpec:
    """One public dataset: sources, data files, format, terms, size and recipe.

    ``files`` are paths inside the unpacked download: one file of events, or two (train,
    test) for a pre-split dataset. ``also_accept`` are file-name patterns ``negrec data
    import`` also takes for the single events file (for example a RecBole ``*.inter``
    copy of MovieLens-100K), read in the format their name implies. ``sources`` is empty
    for datasets that cannot be downloaded without accepting terms on a web page: those
    can only be imported.
    """

    name: str
    title: str
    format: str
    files: tuple[str, ...]
    licence: str
    size: str
    homepage: str
    sources: tuple[Source, ...] = ()
    recipe: Recipe = field(default_factory=Recipe)
    also_accept: tuple[str, ...] = ()
    notes: str = ""

    @property
    def presplit(self) -> bool:
        """Whether the files are a (train, test) pair."""
        return len(self.files) == 2

    @property
    def downloadable(self) -> bool:
        """Whether ``negrec data fetch`` can download it (else: ``negrec data import``)."""
        return bool(self.sources)

    @property
    def download_size(self) -> int | None:
        """Total bytes to download, where every source's size is known."""
        sizes = [s.size for s in self.sources]
        if not sizes or any(s is None for s in sizes):
            return None
        return sum(s for s in sizes if s is not None)


# ------------------------------------------------------------------------- the entries
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_MOVIELENS_TERMS = (
    "GroupLens research licence: research use only, no redistribution and no commercial "
    "use without permission; cite Harper & Konstan, ACM TiiS 2015"
)
_AMAZON_2014_TERMS = (
    "research use only (McAuley et al.); cite He & McAuley WWW 2016 and McAuley et al. SIGIR 2015"
)
_AMAZON_2018_TERMS = "research use only (McAuley lab); cite Ni, Li & McAuley, EMNLP 2019"
_SNAP_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
_AMAZON_2018 = "https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/"


# GitHub files are pinned to a commit, so a moved branch cannot change what is fetched.
def _github(repo: str, commit: str, path: str) -> str:
    """The raw URL of ``path`` in GitHub repository ``repo`` at ``commit``."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_LIGHTGCN = _github("kuandeng/LightGCN", "92c4ce79d46d94b98863b93af6b6cf9617e3e6cf", "Data/")
_NCF = _github(
    "hexiangnan/neural_collaborative_filtering", "4aab159e81c44b062c091bdaed0ab54ac632371f", "Data/"
)
_SASREC = _github("kang205/SASRec", "d0b823a1b2845ea90b090eaf6d3386810005b83a", "data/")
_SELFREC = "Coder-Yu/SELFRec"
_SELFREC_HOME = "https://github.com/Coder-Yu/SELFRec/tree/main/dataset"
_MCNS = _github("THUDM/MCNS", "5ada847f8492e81d7451cc508f2695ef968c358a", "data/ali/")
_RECZOO = "https://huggingface.co/datasets/reczoo/"
_RECZOO_TERMS = (
    "Amazon review data (McAuley lab, https://cseweb.ucsd.edu/~jmcauley/datasets.html): "
    "research use only; processed by the BGCF authors (Sun et al., KDD 2020) and hosted by "
    "RecZoo, which states no licence of its own for the files"
)
_SIMCE = "SimCE (Yang et al., arXiv 2406.16170) Table 2"
_HNS = "the hard-negative-sampling paper (Shi et al., WWW 2023)"
_HNS_REPO = "swt-user/WWW_2023_code"
_HNS_COMMIT = "e4928715c3f330e7bf04241aaf9e782f2cf88a15"


def _movielens(
    name: str, title: str, member: str, fmt: str, size: str, md5: str | None
) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        title=title,
        format=fmt,
        files=(member,),
        licence=_MOVIELENS_TERMS,
        size=size,
        homepage="https://grouplens.org/datasets/movielens/",
        sources=(Source(_GROUPLENS + f"{name}.zip", f"{name}.zip", md5=md5),),
        recipe=Recipe(min_rating=4.0),
    )


_SPECS: tuple[DatasetSpec, ...] = (
    # ------------------------------------------------------------------ MovieLens (raw)
    DatasetSpec(
        name="ml-100k",
        title="MovieLens 100K",
        format="movielens-100k",
        files=("ml-100k/u.data",),
        also_accept=("*.inter",),
        licence=_MOVIELENS_TERMS,
        size="100,000 ratings; 943 users x 1,682 movies (55,375 ratings >= 4)",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        sources=(
            Source(
                _GROUPLENS + "ml-100k.zip", "ml-100k.zip", md5="0e33842e24a9c977be4e0107933c0723"
            ),
        ),
        recipe=Recipe(),
        notes="all ratings as implicit feedback (pass --min-rating 4 for the positives only)",
    ),
    _movielens(
        "ml-1m",
        "MovieLens 1M",
        "ml-1m/ratings.dat",
        "movielens-dat",
        "1,000,209 ratings; 6,040 users x 3,706 movies (575,281 ratings >= 4)",
        "c4d9eecfca2ab87c1945afe126590906",
    ),
    DatasetSpec(
        name="ml-10m",
        title="MovieLens 10M",
        format="movielens-dat",
        files=("ml-10M100K/ratings.dat",),
        licence=_MOVIELENS_TERMS,
        size="10,000,054 ratings; 69,878 users x 10,677 movies",
        homepage="https://grouplens.org/datasets/movielens/10m/",
        sources=(
            Source(_GROUPLENS + "ml-10m.zip", "ml-10m.zip", md5="ce571fd55effeba0271552578f2648bd"),
        ),
        recipe=Recipe(min_rating=4.0),
    ),
    _movielens(
        "ml-20m",
        "MovieLens 20M",
        "ml-20m/ratings.csv",
        "movielens-csv",
        "20,000,263 ratings; 138,493 users x 26,744 movies",
        "cd245b17a1ae2cc31bb14903e1204af3",
    ),
    _movielens(
        "ml-25m",
        "MovieLens 25M",
        "ml-25m/ratings.csv",
        "movielens-csv",
        "25,000,095 ratings; 162,541 users x 59,047 movies",
        "6b51fb2759a8657d3bfcbfc42b592ada",
    ),
    _movielens(
        "ml-latest-small",
        "MovieLens latest (small; changes over time)",
        "ml-latest-small/ratings.csv",
        "movielens-csv",
        "about 100,000 ratings; about 600 users x 9,000 movies (grows over time)",
        None,
    ),
    # --------------------------------------------------- pre-split benchmark versions
    DatasetSpec(
        name="ml-1m-lightgcn",
        title="MovieLens 1M, SimCE / LightGCN split (ratings >= 4, random 80/20 per user)",
        format="lightgcn",
        files=("train.txt", "test.txt"),
        licence=_MOVIELENS_TERMS + "; split by jode-reflact/LightGCN-curriculum-learning",
        size="575,281 interactions (457,819 train + 117,462 test); 6,038 users x 3,533 items",
        homepage="https://github.com/jode-reflact/LightGCN-curriculum-learning",
        sources=tuple(
            Source(
                "https://raw.githubusercontent.com/jode-reflact/LightGCN-curriculum-learning/"
                f"28eac9b1/data/ml-1m/{part}.txt",
                f"{part}.txt",
                sha256=sha,
                size=size,
            )
            for part, sha, size in (
                (
                    "train",
                    "e0641a38ad25ebec9601888821b0665e9f0897dd3820d0fd95e4b25b7a61243f",
                    2179909,
                ),
                (
                    "test",
                    "aba9870d86d6c5a537b4c9318ad2185a72038a7741701d2f2e37b0719b5d07c0",
                    580828,
                ),
            )
        ),
        recipe=Recipe(split="given", on_unseen="keep"),
        notes="some test items never occur in train; they stay in the catalogue (on_unseen=keep); "
        "the same 575,281 ratings >= 4 as ml-1m-selfrec, the SELFRec files SimCE's code reads",
    ),
    DatasetSpec(
        name="gowalla-lightgcn",
        title="Gowalla, LightGCN split (10-core, random 80/20 per user)",
        format="lightgcn",
        files=("train.txt", "test.txt"),
        licence="SNAP Gowalla data (cite Cho, Myers & Leskovec, KDD 2011); split by the "
        "LightGCN authors (He et al., SIGIR 2020)",
        size="1,027,370 interactions (810,128 train + 217,242 test); 29,858 users x 40,981 items",
        homepage="https://github.com/kuandeng/LightGCN",
        notes=f"the split of {_SIMCE} (29.9k / 41.0k / 1027.4k); the hard-negative paper's "
        "code reads its own Gowalla matrix instead (gowalla-hns)",
        sources=tuple(
            Source(_LIGHTGCN + f"gowalla/{part}.txt", f"{part}.txt", sha256=sha, size=size)
            for part, sha, size in (
                (
                    "train",
                    "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
                    4633414,
                ),
                (
                    "test",
                    "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
                    1372559,
                ),
            )
        ),
        recipe=Recipe(split="given"),
    ),
    DatasetSpec(
        name="yelp2018-lightgcn",
        title="Yelp 2018, LightGCN split (10-core, random 80/20 per user)",
        format="lightgcn",
        files=("train.txt", "test.txt"),
        licence="Yelp dataset terms (non-commercial, academic use); split by the LightGCN authors",
        size="1,561,406 interactions (1,237,259 train); 31,668 users x 38,048 items",
        homepage="https://github.com/kuandeng/LightGCN",
        notes=f"the split of {_SIMCE} (SELFRec's yelp2018 is this split rewritten as 'user "
        "item 1' lines by its process.py)",
        sources=tuple(
            Source(_LIGHTGCN + f"yelp2018/{part}.txt", f"{part}.txt") for part in ("train", "test")
        ),
        recipe=Recipe(split="given"),
    ),
    DatasetSpec(
        name="amazon-book-lightgcn",
        title="Amazon-Book, LightGCN split (10-core, random 80/20 per user)",
        format="lightgcn",
        files=("train.txt", "test.txt"),
        licence=_AMAZON_2014_TERMS + "; split by the LightGCN authors",
        size="2,984,108 interactions (2,380,730 train + 603,378 test); 52,643 users x 91,599 items",
        homepage="https://github.com/kuandeng/LightGCN",
        notes=f"the split of {_SIMCE} (RecZoo's AmazonBooks_m1, which RecZoo lists as "
        "LightGCN's data, has these counts)",
        sources=tuple(
            Source(_LIGHTGCN + f"amazon-book/{part}.txt", f"{part}.txt")
            for part in ("train", "test")
        ),
        recipe=Recipe(split="given"),
    ),
    DatasetSpec(
        name="amazon-beauty-selfrec",
        title="Amazon Beauty (SASRec 'Beauty'), SELFRec leave-last-out sequences",
        format="sequence",
        files=("train.txt", "test.txt"),
        licence=_AMAZON_2014_TERMS + "; prepared by Coder-Yu/SELFRec",
        size="198,502 interactions (176,139 train + 22,363 test); 22,363 users x 12,101 items",
        homepage="https://github.com/Coder-Yu/SELFRec",
        sources=tuple(
            Source(
                _github(
                    _SELFREC,
                    "5b0229423cb1c727e85a704d63e460368c8b9dde",
                    f"dataset/amazon-beauty/{part}.txt",
                ),
                f"{part}.txt",
                sha256=sha,
                size=size,
            )
            for part, sha, size in (
                (
                    "train",
                    "54d2d8905408cc11aef96834a7f60e0cb9d7a2593f797ea0a188e7c1ffe95380",
                    979751,
                ),
                (
                    "test",
                    "66f2b03db1850a53a0103ddd6adda93cede7228294cf46a2dcdf3b349b80cf88",
                    233415,
                ),
            )
        ),
        recipe=Recipe(split="given", on_unseen="keep"),
        notes="some test items never occur in train; they stay in the catalogue (on_unseen=keep)",
    ),
    # ------------------------------------------- the rest of the SimCE paper's Table 2
    DatasetSpec(
        name="ml-1m-selfrec",
        title="MovieLens 1M, SELFRec split (ratings >= 4, random 80/20 of all interactions)",
        format="pairs",
        files=("train.txt", "test.txt"),
        licence=_MOVIELENS_TERMS + "; split by Coder-Yu/SELFRec (dataset/ml-1M/split.py)",
        size="575,281 interactions; 6,038 users x 3,533 items (SimCE reports 6.0k / 3.5k / 575.3k)",
        homepage=_SELFREC_HOME,
        sources=tuple(
            Source(
                _github(
                    _SELFREC,
                    "2c4db0b884f82fd2a2fef9c3260b9daa18516d35",
                    f"dataset/ml-1M/{part}.txt",
                ),
                f"{part}.txt",
            )
            for part in ("train", "test")
        ),
        recipe=Recipe(split="given", on_unseen="keep"),
        notes=f"the MovieLens-1M of {_SIMCE}: SimCE's code runs on SELFRec's "
        "dataset/ml-1M/{train,test}.txt; lines 'user item rating' with MovieLens's own "
        "1-based ids; split.py keeps ratings >= 4 and sends each one to test with "
        "probability 0.2, so a few test users/items are unseen in train (kept)",
    ),
    DatasetSpec(
        name="douban-book-selfrec",
        title="Douban-Book, SELFRec split (random 80/20 of all interactions)",
        format="pairs",
        files=("train.txt", "test.txt"),
        licence="Douban data: terms unspecified by source (SELFRec states none); split by "
        "Coder-Yu/SELFRec (dataset/douban-book/split.py)",
        size="SimCE Table 2 figures not available offline; a SELFRec-derived script gives "
        "12,638 users x 22,222 items and 478,730 train interactions (unconfirmed)",
        homepage=_SELFREC_HOME,
        sources=tuple(
            Source(
                _github(
                    _SELFREC,
                    "e4307c4235aed5ff7b099f0e88b3f80d573c7215",
                    f"dataset/douban-book/{part}.txt",
                ),
                f"{part}.txt",
            )
            for part in ("train", "test")
        ),
        recipe=Recipe(split="given", on_unseen="keep"),
        notes=f"the Douban-Book of {_SIMCE} (SimCE names SELFRec's dataset folder as a "
        "source); lines 'user item rating'; split.py sends each interaction "
        "to test with probability 0.2, so test users/items unseen in train are kept",
    ),
    DatasetSpec(
        name="alibaba-mcns",
        title="Alibaba, MCNS edge-list split (Yang et al., KDD 2020)",
        format="pairs",
        files=("train.txt", "test.txt"),
        licence="unspecified by source (the MCNS repository states no terms for its data); "
        "prepared by Yang, Ding et al. (MCNS, KDD 2020)",
        size="907,470 edges (train + valid + test); 106,042 users x 53,591 items (MCNS README)",
        homepage="https://github.com/THUDM/MCNS",
        sources=tuple(Source(_MCNS + f"{part}.txt", f"{part}.txt") for part in ("train", "test")),
        recipe=Recipe(split="given", on_unseen="keep"),
        notes=f"the Alibaba of {_SIMCE} (SimCE names the MCNS repository as a source); lines "
        "'user TAB item', item ids offset by the 106,042 users (re-encoded on preparation); "
        "MCNS's valid.txt is not used, so train + test hold fewer than the 907,470 edges",
    ),
    DatasetSpec(
        name="amazon-cd-reczoo",
        title="Amazon-CDs, RecZoo / BGCF split (AmazonCDs_m1)",
        format="lightgcn",
        files=("train.txt", "test.txt"),
        licence=_RECZOO_TERMS,
        size="777,426 interactions (604,475 train + 172,951 test); 43,169 users x 35,648 items",
        homepage="https://github.com/reczoo/Datasets/tree/main/Amazon/AmazonCDs_m1",
        sources=(
            Source(
                _RECZOO + "AmazonCDs_m1/resolve/main/train.txt",
                "train.txt",
                md5="2df6a35cac4373cf3eef95f75568da0a",
            ),
            Source(
                _RECZOO + "AmazonCDs_m1/resolve/main/test.txt",
                "test.txt",
                md5="d29acb66d0fb74bc3bc0791cbbce5cf2",
            ),
        ),
        recipe=Recipe(split="given", on_unseen="keep"),
        notes=f"the Amazon-CD of {_SIMCE} (SimCE names RecZoo's SimpleX data as a source); "
        "adjacency lines 'user item item ...'; the md5 sums are the ones RecZoo publishes "
        "(reczoo/RecZoo matching/cf/SimpleX/data/Amazon/AmazonCDs_m1/README.md)",
    ),
    DatasetSpec(
        name="amazon-movies-reczoo",
        title="Amazon-Movies, RecZoo / BGCF split (AmazonMovies_m1)",
        format="lightgcn",
        files=("train.txt", "test.txt"),
        licence=_RECZOO_TERMS,
        size="1,070,860 interactions (839,444 train + 231,416 test); 44,439 users x 25,047 items",
        homepage="https://github.com/reczoo/RecZoo/tree/main/matching/cf/SimpleX",
        sources=(
            Source(
                _RECZOO + "AmazonMovies_m1/resolve/main/train.txt",
                "train.txt",
                md5="3e9d30eacd30330a9feaa0fdb17760ba",
            ),
            Source(
                _RECZOO + "AmazonMovies_m1/resolve/main/test.txt",
                "test.txt",
                md5="c02e5f6579aa51950aa875c462a0204b",
            ),
        ),
        recipe=Recipe(split="given", on_unseen="keep"),
        notes=f"the Amazon-Movies of {_SIMCE} (SimCE names RecZoo's SimpleX data as a "
        "source); adjacency lines 'user item item ...'; the md5 sums are the ones RecZoo "
        "publishes (matching/cf/SimpleX/data/Amazon/AmazonMovies_m1/README.md)",
    ),
    DatasetSpec(
        name="ifashion-selfrec",
        title="Alibaba-iFashion, SELFRec split (pre-split 'user item weight' lines)",
        format="pairs",
        files=("train.txt", "test.txt"),
        licence="Alibaba iFashion (POG) data, Chen et al., KDD 2019: terms unspecified by source",
        size="SimCE Table 2 figures not available offline; a SELFRec-derived script gives "
        "300,000 users x 81,614 items and 1,255,447 train interactions (unconfirmed)",
        homepage=_SELFREC_HOME,
        recipe=Recipe(split="given", on_unseen="keep"),
        notes=f"the iFashion of {_SIMCE}; no copy pinned to a commit of the source SimCE "
        "names (SELFRec) was found, so there is no direct download: put its "
        "iFashion/train.txt and test.txt in a folder and `negrec data import "
        "ifashion-selfrec FOLDER`",
    ),
    DatasetSpec(
        name="amazon-kindle-selfrec",
        title="Amazon-Kindle, SELFRec split (pre-split 'user item weight' lines)",
        format="pairs",
        files=("train.txt", "test.txt"),
        licence="Amazon review data (McAuley lab): research use only; which release is "
        "unspecified by source",
        size="SimCE Table 2 figures not available offline; a SELFRec-derived script gives "
        "138,333 users x 98,572 items and 1,527,913 train interactions (unconfirmed)",
        homepage=_SELFREC_HOME,
        recipe=Recipe(split="given", on_unseen="keep"),
        notes=f"the Amazon-Kindle of {_SIMCE}; no copy pinned to a commit of the source "
        "SimCE names (SELFRec) was found, so there is no direct download: put its "
        "amazon-kindle/train.txt and test.txt in a folder and `negrec data import "
        "amazon-kindle-selfrec FOLDER`",
    ),
    # ------------------------------------------ the hard-negative-sampling paper's data
    DatasetSpec(
        name="gowalla-hns",
        title="Gowalla as the hard-negative-sampling code reads it (users x items .mat)",
        format="matlab",
        files=("gowalladata.mat",),
        licence="Gowalla check-ins (Cho, Myers & Leskovec, KDD 2011); the matrix was "
        "prepared by the AdaSIR / HNS authors, whose repository states no terms for it",
        size="counts not published by the source (negrec prints them when it prepares the file)",
        homepage=f"https://github.com/{_HNS_REPO}",
        sources=(
            Source(_github(_HNS_REPO, _HNS_COMMIT, "datasets/gowalladata.mat"), "gowalladata.mat"),
        ),
        recipe=Recipe(split="random", test_fraction=0.2),
        notes=f"the Gowalla of {_HNS}: its code loads datasets/gowalladata.mat "
        "(scipy.io.loadmat(...)['data']) and splits each user's items 80/20 at random at "
        "run time, as this recipe does; gowalla-lightgcn is the LightGCN split of Gowalla",
    ),
    DatasetSpec(
        name="yelp-hns",
        title="Yelp as the hard-negative-sampling code reads it (users x items .mat)",
        format="matlab",
        files=("yelpdata.mat",),
        licence="Yelp Dataset Terms of Use (non-commercial, academic use); the matrix's "
        "preparation and terms are unspecified by source",
        size="counts not published by the source (negrec prints them when it prepares the file)",
        homepage=f"https://github.com/{_HNS_REPO}",
        recipe=Recipe(split="random", test_fraction=0.2),
        notes=f"the Yelp of {_HNS} (its code's --data yelp reads datasets/yelpdata.mat); "
        "the repository does not publish that file, so there is no direct download: "
        "`negrec data import yelp-hns yelpdata.mat` where you have it",
    ),
    DatasetSpec(
        name="amazon-hns",
        title="Amazon as the hard-negative-sampling code reads it (users x items .mat)",
        format="matlab",
        files=("amazonidata.mat",),
        licence="Amazon review data (McAuley lab): research use only; which category and "
        "release, and the matrix's terms, are unspecified by source",
        size="counts not published by the source (negrec prints them when it prepares the file)",
        homepage=f"https://github.com/{_HNS_REPO}",
        recipe=Recipe(split="random", test_fraction=0.2),
        notes=f"the Amazon data of {_HNS} (its code's --data amazoni reads "
        "datasets/amazonidata.mat); the repository does not publish that file, so there is "
        "no direct download: `negrec data import amazon-hns amazonidata.mat` where you "
        "have it",
    ),
    # ------------------------------------------------------------- NCF and SASRec files
    DatasetSpec(
        name="ml-1m-ncf",
        title="MovieLens 1M, NCF leave-one-out split",
        format="ncf-rating",
        files=("ml-1m.train.rating", "ml-1m.test.rating"),
        licence=_MOVIELENS_TERMS + "; split by He et al. (NCF, WWW 2017)",
        size="1,000,209 ratings (994,169 train + 6,040 test); 6,040 users x 3,706 items",
        homepage="https://github.com/hexiangnan/neural_collaborative_filtering",
        sources=tuple(
            Source(_NCF + f"ml-1m.{part}.rating", f"ml-1m.{part}.rating")
            for part in ("train", "test")
        ),
        recipe=Recipe(split="given"),
    ),
    DatasetSpec(
        name="pinterest-ncf",
        title="Pinterest (pinterest-20), NCF leave-one-out split",
        format="ncf-rating",
        files=("pinterest-20.train.rating", "pinterest-20.test.rating"),
        licence="terms not stated by the NCF repository; original data: Geng et al., ICCV 2015",
        size="1,500,809 interactions; 55,187 users x 9,916 items",
        homepage="https://github.com/hexiangnan/neural_collaborative_filtering",
        notes=f"the Pinterest of {_SIMCE}, whose code names the NCF repository as its source",
        sources=tuple(
            Source(_NCF + f"pinterest-20.{part}.rating", f"pinterest-20.{part}.rating")
            for part in ("train", "test")
        ),
        recipe=Recipe(split="given"),
    ),
    DatasetSpec(
        name="beauty-sasrec",
        title="Amazon Beauty as distributed with SASRec (time-ordered 'user item' lines)",
        format="sasrec",
        files=("Beauty.txt",),
        licence=_AMAZON_2014_TERMS + "; prepared by Kang & McAuley (SASRec, ICDM 2018)",
        size="about 0.4M actions; 52,024 users x 57,289 items (SASRec paper, Table 2)",
        homepage="https://github.com/kang205/SASRec",
        sources=(Source(_SASREC + "Beauty.txt", "Beauty.txt"),),
        recipe=Recipe(split="leave_one_out"),
    ),
    DatasetSpec(
        name="ml-1m-sasrec",
        title="MovieLens 1M as distributed with SASRec (time-ordered 'user item' lines)",
        format="sasrec",
        files=("ml-1m.txt",),
        licence=_MOVIELENS_TERMS + "; prepared by Kang & McAuley (SASRec, ICDM 2018)",
        size="about 1M interactions; 6,040 users x 3,416 items",
        homepage="https://github.com/kang205/SASRec",
        sources=(Source(_SASREC + "ml-1m.txt", "ml-1m.txt"),),
        recipe=Recipe(split="leave_one_out"),
    ),
    # ------------------------------------------------------------------ Amazon (raw)
    DatasetSpec(
        name="amazon-beauty-2014",
        title="Amazon 2014 Beauty, ratings only",
        format="amazon-csv-2014",
        files=("ratings_Beauty.csv",),
        licence=_AMAZON_2014_TERMS,
        size="2,023,070 ratings",
        homepage="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
        sources=(Source(_SNAP_2014 + "ratings_Beauty.csv", "ratings_Beauty.csv"),),
        recipe=Recipe(min_rating=4.0, k_core=5),
    ),
    DatasetSpec(
        name="amazon-beauty-2014-5core",
        title="Amazon 2014 Beauty, 5-core reviews (JSON lines)",
        format="amazon-json",
        files=("reviews_Beauty_5.json",),
        also_accept=("reviews_Beauty_5.json.gz",),
        licence=_AMAZON_2014_TERMS,
        size="198,502 reviews; 22,363 users x 12,101 items",
        homepage="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
        sources=(
            Source(
                "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
                "reviews_Beauty_5.json.gz",
                "reviews_Beauty_5.json.gz",
            ),
        ),
        recipe=Recipe(split="leave_one_out"),
    ),
    DatasetSpec(
        name="amazon-books-2014-5core",
        title="Amazon 2014 Books, 5-core reviews (JSON lines)",
        format="amazon-json",
        files=("reviews_Books_5.json",),
        also_accept=("reviews_Books_5.json.gz",),
        licence=_AMAZON_2014_TERMS,
        size="8,898,041 reviews; 603,668 users x 367,982 items",
        homepage="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
        sources=(
            Source(
                "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
                "reviews_Books_5.json.gz",
                "reviews_Books_5.json.gz",
            ),
        ),
        recipe=Recipe(split="leave_one_out"),
    ),
    DatasetSpec(
        name="amazon-beauty-2018",
        title="Amazon 2018 All Beauty, ratings only",
        format="amazon-csv-2018",
        files=("All_Beauty.csv",),
        licence=_AMAZON_2018_TERMS,
        size="371,345 ratings",
        homepage="https://nijianmo.github.io/amazon/",
        sources=(Source(_AMAZON_2018 + "All_Beauty.csv", "All_Beauty.csv"),),
        recipe=Recipe(min_rating=4.0, k_core=5),
    ),
    DatasetSpec(
        name="amazon-beauty-2018-5core",
        title="Amazon 2018 All Beauty, 5-core reviews (JSON lines)",
        format="amazon-json",
        files=("All_Beauty_5.json",),
        also_accept=("All_Beauty_5.json.gz",),
        licence=_AMAZON_2018_TERMS,
        size="5,269 reviews",
        homepage="https://nijianmo.github.io/amazon/",
        sources=(Source(_AMAZON_2018 + "All_Beauty_5.json.gz", "All_Beauty_5.json.gz"),),
        recipe=Recipe(split="leave_one_out"),
    ),
    # -------------------------------------------------------------- check-ins and Yelp
    DatasetSpec(
        name="gowalla",
        title="Gowalla check-ins (SNAP), raw",
        format="gowalla-checkins",
        files=("loc-gowalla_totalCheckins.txt",),
        also_accept=("loc-gowalla_totalCheckins.txt.gz",),
        licence="SNAP: free for research; cite Cho, Myers & Leskovec, KDD 2011",
        size="6,442,890 check-ins; 107,092 users",
        homepage="https://snap.stanford.edu/data/loc-gowalla.html",
        sources=(
            Source(
                "https://snap.stanford.edu/data/loc-gowalla_totalCheckins.txt.gz",
                "loc-gowalla_totalCheckins.txt.gz",
            ),
        ),
        recipe=Recipe(k_core=10),
        notes="the LightGCN version of this data is gowalla-lightgcn",
    ),
    DatasetSpec(
        name="foursquare-nyc",
        title="Foursquare NYC check-ins (TSMC2014)",
        format="foursquare-tsmc",
        files=("dataset_tsmc2014/dataset_TSMC2014_NYC.txt",),
        licence="non-commercial research use; cite Yang, Zhang, Zheng & Yu, IEEE TSMC 2015",
        size="227,428 check-ins; 1,083 users",
        homepage="https://sites.google.com/site/yangdingqi/home/foursquare-dataset",
        sources=(
            Source(
                "http://www-public.imtbs-tsp.eu/~zhang_da/pub/dataset_tsmc2014.zip",
                "dataset_tsmc2014.zip",
            ),
        ),
        recipe=Recipe(k_core=5, split="leave_one_out"),
    ),
    DatasetSpec(
        name="foursquare-tky",
        title="Foursquare Tokyo check-ins (TSMC2014)",
        format="foursquare-tsmc",
        files=("dataset_tsmc2014/dataset_TSMC2014_TKY.txt",),
        licence="non-commercial research use; cite Yang, Zhang, Zheng & Yu, IEEE TSMC 2015",
        size="573,703 check-ins; 2,293 users",
        homepage="https://sites.google.com/site/yangdingqi/home/foursquare-dataset",
        sources=(
            Source(
                "http://www-public.imtbs-tsp.eu/~zhang_da/pub/dataset_tsmc2014.zip",
                "dataset_tsmc2014.zip",
            ),
        ),
        recipe=Recipe(k_core=5, split="leave_one_out"),
    ),
    DatasetSpec(
        name="yelp",
        title="Yelp Open Dataset reviews (academic JSON)",
        format="yelp-json",
        files=("yelp_academic_dataset_review.json",),
        also_accept=("review.json",),
        licence="Yelp Dataset Terms of Use: non-commercial, academic use; accept them at "
        "https://www.yelp.com/dataset before downloading",
        size="about 7 million reviews (6,990,280 in the 2022 release)",
        homepage="https://www.yelp.com/dataset",
        recipe=Recipe(min_rating=4.0, k_core=10),
        notes="no direct download: get the file from yelp.com, then `negrec data import yelp PATH`",
    ),
)

#: Every dataset negrec knows, by name.
REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry called ``name``; an UnknownDataset error lists the names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownDataset(
            f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)} "
            "(`negrec data list` describes them)"
        ) from None


def dataset_names() -> list[str]:
    """Names of the registered datasets, in registry order."""
    return list(REGISTRY)


__all__ = [
    "REGISTRY",
    "DatasetSpec",
    "Recipe",
    "Source",
    "UnknownDataset",
    "dataset_names",
    "get_spec",
]
