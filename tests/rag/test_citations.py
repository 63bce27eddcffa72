from rag.citations import MarkerFilter, clean_markers


def test_markers_outside_the_source_range_are_removed():
    text, cited = clean_markers("A [1]. B [4]. C [2, 9]. D [0].", n_sources=2)
    assert text == "A [1]. B . C [2]. D ."
    assert cited == [1, 2]


def test_markers_are_renumbered_densely_in_order_of_first_use():
    text, cited = clean_markers("x [4] y [1] z [4, 2] w [1, 1]", n_sources=4)
    assert text == "x [1] y [2] z [1][3] w [2]"
    assert cited == [4, 1, 2]


def test_stream_filter_holds_a_marker_split_across_deltas():
    f = MarkerFilter(n_sources=2)
    pieces = ["Jobs run 72 hours [", "2", "] and quota is 8 [", "5]", " GPUs [1", "]"]
    out = "".join(f.feed(p) for p in pieces) + f.flush()
    assert out == "Jobs run 72 hours [1] and quota is 8  GPUs [2]"
    assert f.cited == [2, 1]


def test_stream_filter_passes_brackets_that_are_not_markers():
    f = MarkerFilter(n_sources=1)
    out = f.feed("array[i] and [note]") + f.flush()
    assert out == "array[i] and [note]"


def test_stream_filter_flushes_an_unfinished_bracket_at_the_end():
    f = MarkerFilter(n_sources=1)
    assert f.feed("see [") == "see "
    assert f.flush() == "["
