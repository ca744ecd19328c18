"""Write `known_answers.jsonl`: data-juicer 1.6.1's own outputs for every operator we can run
offline, on hand-made edge cases and on documents from ../shared/data/steel-samples.

Run with a Python that has `py-data-juicer==1.6.1` (and ftfy, opencc==1.1.9 — the version
py-data-juicer 1.6.1 pins —, selectolax, simhash-pybind):
    python tests/data/clean/make_known_answers.py ../shared/data/steel-samples > tests/data/clean/known_answers.jsonl
The first line is {"texts": [...]}; each further line is {"op", "params", "out": [...]} with one
output per text: the mapped text (null when unchanged), the statistic, or the hash.
"""

import json
import sys
import warnings

import pandas as pd

warnings.filterwarnings("ignore")
from loguru import logger  # noqa: E402

logger.remove()

from data_juicer.ops.deduplicator.document_deduplicator import DocumentDeduplicator  # noqa: E402
from data_juicer.ops.deduplicator.document_minhash_deduplicator import DocumentMinhashDeduplicator  # noqa: E402
from data_juicer.ops.deduplicator.document_simhash_deduplicator import DocumentSimhashDeduplicator  # noqa: E402
from data_juicer.ops.filter import (  # noqa: E402
    alphanumeric_filter,
    flagged_words_filter,
    stopwords_filter,
    average_line_length_filter,
    character_repetition_filter,
    maximum_line_length_filter,
    special_characters_filter,
    text_length_filter,
    word_repetition_filter,
    words_num_filter,
)
from data_juicer.ops.mapper import (  # noqa: E402
    chinese_convert_mapper,
    clean_copyright_mapper,
    clean_email_mapper,
    clean_html_mapper,
    clean_ip_mapper,
    clean_links_mapper,
    expand_macro_mapper,
    fix_unicode_mapper,
    punctuation_normalization_mapper,
    remove_repeat_sentences_mapper,
    remove_specific_chars_mapper,
    whitespace_normalization_mapper,
)
from data_juicer.utils.constant import Fields, HashKeys  # noqa: E402

EDGE = [
    "",
    " ",
    "   \n\t  ",
    "no newline at all",
    "中文和English混合的text，还有123数字。",
    "Hello world. Hello world. hello world.\nHello world.",
    "今天天气真不错。今天天气真不错！明天呢？明天呢？",
    "contact: alice.smith+tag@example.com, bob@test.org; 电话 192.168.0.1 and fe80:0:0:0:202:b3ff:fe1e:8329",
    "see https://www.example.com/path?q=1 and (http://a.b/c_(d)) or www.site.org. 访问http://中文.com 链接",
    "<html><head><title>T</title></head><body><p>a &amp; b</p><ul><li>one</li><li>two</li></ul></body></html>",
    "/* Copyright 2020 Foo */\nint main() { return 0; }",
    "# comment\n// another\n\n-- sql\ncode line\n# not removed",
    "\\newcommand{\\R}{\\mathbb{R}}\n\\def\\eps{\\varepsilon}\nLet $x \\in \\R$ and \\eps > 0.",
    "Ã©tÃ© â€œquotedâ€\x9d &amp; ﬁne ｆｕｌｌ\u3000width\r\nline",
    "，。、„”“«»１」「《》´∶：？！（）；–—．～’…━〈〉【】％►",
    "◆●■►▼▲▴∆▻▷❖♡□ kept|pipe",
    " x\u3000y\u200bz\tw\u00a0\u2028end\u0085 ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc abc",
    "😀😀 emoji 🎉 text ™ © ®",
    "line1\r\nline2\rline3\x0bline4\x0cline5\u2028line6",
    "這是繁體中文，會被轉換為簡體。軟體與資訊",
    "a\n\n\nb\n",
    "word " * 30,
]


def samples(directory):
    """A few documents of each converted sample, as `steel convert` renders them."""
    texts = []
    with open(f"{directory}/sky_web.jsonl") as f:
        for i, line in enumerate(f):
            if i % 100 == 0:
                texts.append(json.loads(line)["text"][:1500])
    with open(f"{directory}/belle_instruction.jsonl") as f:
        for i, line in enumerate(f):
            if i % 100 == 0:
                d = json.loads(line)
                texts.append(d["instruction"] + d["input"] + "\n" + d["output"])
    df = pd.read_parquet(f"{directory}/zhihu_qa.parquet")
    for i in range(0, len(df), 100):
        texts.append(str(df.iloc[i]["INSTRUCTION"]) + "\n" + str(df.iloc[i]["RESPONSE"])[:1500])
    df = pd.read_parquet(f"{directory}/starcoder_python.parquet")
    for i in range(0, len(df), 50):
        texts.append(str(df.iloc[i]["content"])[:1500])
    return texts


MAPPERS = [
    ("chinese_convert_mapper", {"mode": "t2s"}, chinese_convert_mapper.ChineseConvertMapper),
    ("clean_email_mapper", {}, clean_email_mapper.CleanEmailMapper),
    ("clean_html_mapper", {}, clean_html_mapper.CleanHtmlMapper),
    ("clean_ip_mapper", {}, clean_ip_mapper.CleanIpMapper),
    ("clean_links_mapper", {}, clean_links_mapper.CleanLinksMapper),
    ("clean_copyright_mapper", {}, clean_copyright_mapper.CleanCopyrightMapper),
    ("expand_macro_mapper", {}, expand_macro_mapper.ExpandMacroMapper),
    ("fix_unicode_mapper", {}, fix_unicode_mapper.FixUnicodeMapper),
    ("punctuation_normalization_mapper", {}, punctuation_normalization_mapper.PunctuationNormalizationMapper),
    ("remove_repeat_sentences_mapper", {}, remove_repeat_sentences_mapper.RemoveRepeatSentencesMapper),
    ("remove_specific_chars_mapper", {}, remove_specific_chars_mapper.RemoveSpecificCharsMapper),
    ("whitespace_normalization_mapper", {}, whitespace_normalization_mapper.WhitespaceNormalizationMapper),
]

FILTERS = [
    ("alphanumeric_filter", {}, alphanumeric_filter.AlphanumericFilter, "alnum_ratio"),
    ("average_line_length_filter", {}, average_line_length_filter.AverageLineLengthFilter, "avg_line_length"),
    ("character_repetition_filter", {}, character_repetition_filter.CharacterRepetitionFilter, "char_rep_ratio"),
    ("maximum_line_length_filter", {}, maximum_line_length_filter.MaximumLineLengthFilter, "max_line_length"),
    ("special_characters_filter", {}, special_characters_filter.SpecialCharactersFilter, "special_char_ratio"),
    ("text_length_filter", {}, text_length_filter.TextLengthFilter, "text_len"),
    ("words_num_filter", {"lang": "zh"}, words_num_filter.WordsNumFilter, "num_words"),
    ("word_repetition_filter", {"lang": "zh"}, word_repetition_filter.WordRepetitionFilter, "word_rep_ratio"),
]


def word_list_dir():
    """Steel's shipped word lists in data-juicer's asset format, so both sides use the same."""
    import os
    import tempfile

    here = os.path.dirname(os.path.abspath(__file__))
    words = os.path.join(here, "../../../dataflow/data/words")
    out = tempfile.mkdtemp()
    for kind in ["stopwords", "flagged_words"]:
        lists = {}
        for lang in ["zh", "en"]:
            with open(os.path.join(words, f"{lang}_{kind}.txt"), encoding="utf-8") as f:
                lists[lang] = [w for w in f.read().split("\n") if w]
        with open(os.path.join(out, f"{kind}.json"), "w", encoding="utf-8") as f:
            json.dump(lists, f, ensure_ascii=False)
    return out


def main():
    texts = EDGE + samples(sys.argv[1])
    print(json.dumps({"texts": texts}, ensure_ascii=False))

    def emit(name, params, outputs):
        print(json.dumps({"op": name, "params": params, "out": outputs}, ensure_ascii=False))

    for name, params, cls in MAPPERS:
        mapped = cls(**params).process_batched({"text": list(texts)})["text"]
        emit(name, params, [m if m != t else None for t, m in zip(texts, mapped)])
    for name, params, cls, key in FILTERS:
        batch = cls(**params).compute_stats_batched({"text": list(texts), Fields.stats: [{} for _ in texts]})
        emit(name, params, [s[key] for s in batch[Fields.stats]])
    # Word-list filters with Steel's lists (the `*_dir` parameter is left out of the fixture:
    # Steel reads the same lists from its own data).
    lists = word_list_dir()
    word_filters = [
        ("stopwords_filter", {"lang": "zh", "use_words_aug": True}, "stopwords_dir", stopwords_filter.StopWordsFilter, "stopwords_ratio"),
        ("stopwords_filter", {"lang": "en"}, "stopwords_dir", stopwords_filter.StopWordsFilter, "stopwords_ratio"),
        ("flagged_words_filter", {"lang": "all", "use_words_aug": True, "words_aug_group_sizes": [2, 3]}, "flagged_words_dir", flagged_words_filter.FlaggedWordFilter, "flagged_words_ratio"),
    ]
    for name, params, dir_param, cls, key in word_filters:
        op = cls(**params, **{dir_param: lists})
        values = []
        for t in texts:
            sample = {"text": t, Fields.stats: {}}
            if not getattr(op, "_batched_op", False):
                sample = op.compute_stats_single(sample)
                values.append(sample[Fields.stats][key])
            else:
                batch = op.compute_stats_batched({"text": [t], Fields.stats: [{}]})
                values.append(batch[Fields.stats][0][key])
        emit(name, params, values)
    dedups = [
        ("document_deduplicator", {"lowercase": True, "ignore_non_character": True}, DocumentDeduplicator, HashKeys.hash),
        ("document_simhash_deduplicator", {"tokenization": "character", "window_size": 4}, DocumentSimhashDeduplicator, HashKeys.simhash),
        ("document_simhash_deduplicator", {"tokenization": "space", "window_size": 2, "ignore_pattern": "\\p{P}"}, DocumentSimhashDeduplicator, HashKeys.simhash),
        ("document_simhash_deduplicator", {"tokenization": "punctuation", "window_size": 2}, DocumentSimhashDeduplicator, HashKeys.simhash),
        ("document_minhash_deduplicator", {"tokenization": "character", "window_size": 5, "num_permutations": 16, "num_bands": 4, "num_rows_per_band": 4}, DocumentMinhashDeduplicator, HashKeys.minhash),
    ]
    for name, params, cls, key in dedups:
        op = cls(**params)
        values = [op.compute_hash({"text": t})[key] for t in texts]
        emit(name, params, [[b.hex() for b in v] if isinstance(v, list) else v for v in values])

if __name__ == "__main__":
    main()
