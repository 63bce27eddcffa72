from rag.citations import MarkerFilter, clean_markers


def test_markers_outside_the_source_range_are_removed():
    text, cited = clean_markers("A [1]. B [4]. C [2, 9]. D [0].", n_sources=2)
    assert text == "A [1]. B . C [2]. D ."
    assert cited == [1, 2]


def test_cited_numbers_keep_order_of_first_use():
    _, cited = clean_markers("x [2] y [1] z [2]", n_sources=3)
    assert cited == [2, 1]


def test_stream_filter_holds_a_marker_split_across_deltas():
    f = MarkerFilter(n_sources=2)
    pieces = ["Jobs run 72 hours [", "1", "] and quota is 8 [", "5]", " GPUs [2", "]"]
    out = "".join(f.feed(p) for p in pieces) + f.flush()
    assert out == "Jobs run 72 hours [1] and quota is 8  GPUs [2]"
    assert f.cited == [1, 2]


def test_stream_filter_passes_brackets_that_are_not_markers():
    f = MarkerFilter(n_sources=1)
    out = f.feed("array[i] and [note]") + f.flush()
    assert out == "array[i] and [note]"


def test_stream_filter_flushes_an_unfinished_bracket_at_the_end():
    f = MarkerFilter(n_sources=1)
    assert f.feed("see [") == "see "
    assert f.flush() == "["
