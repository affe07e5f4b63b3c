"""The reader edition: MyST turned into what Jupyter and Colab render."""

from __future__ import annotations

import nbformat
import pytest

from losslab import reader

BIB = r"""
@article{smith2020,
  title = {A Study of Losses}, author = {Smith, Ann}, journal = {J. Learn.}, year = {2020}
}
@inproceedings{smithjones2021,
  title = {Two Authors}, author = {Smith, Ann and Jones, Bob}, booktitle = {Proc. Conf.}, year = {2021}
}
@misc{web2019,
  title = {A \emph{Recipe}}, author = {Karpathy, Andrej}, howpublished = {\url{https://example.org/recipe}}, year = {2019}
}
@article{many2019,
  title = {Many {Authors}}, author = {M{\"u}ller, Kai and Li, Wei and Diaz, Eva}, journal = {Arxiv}, year = {2019}
}
"""


def _page(markdown: list[str], code: str = "import losslab\nlosslab.glue('lr', 0.125)"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(m) for m in markdown[:1]] + [nbformat.v4.new_code_cell(code)]
    nb.cells += [nbformat.v4.new_markdown_cell(m) for m in markdown[1:]]
    return nb


def _run(nb, values: dict[str, str]):
    run = nbformat.v4.new_notebook(cells=[c.copy() for c in nb.cells])
    code = next(c for c in run.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": v},
                                           metadata={"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}})
                    for k, v in values.items()]
    return run


@pytest.fixture
def bib(tmp_path):
    path = tmp_path / "refs.bib"
    path.write_text(BIB)
    return reader.Bibliography(path)


def test_glued_values_are_written_in_as_the_book_formats_them(bib):
    nb = _page(["# T\n\nThe rate is {glue:text}`lr:.3f` and the word is {glue:text}`word`."])
    out = reader.convert(nb, _run(nb, {"lr": "0.12345", "word": "'lower'"}), bib)
    text = out.cells[0].source
    assert "The rate is 0.123 and the word is lower." in text
    assert reader.GLUE_NOTE in text
    assert not reader.leftover_markup(out)


def test_a_missing_glued_value_is_an_error(bib):
    nb = _page(["# T\n\n{glue:text}`nope:.2f`"])
    with pytest.raises(KeyError, match="nope"):
        reader.convert(nb, _run(nb, {}), bib)


def test_citations_become_author_year_and_the_bibliography_a_list(bib):
    nb = _page(["# T", "As shown {footcite:p}`smith2020,smithjones2021`, and by {footcite:t}`many2019`.",
                "## References\n\n```{footbibliography}\n```"])
    out = reader.convert(nb, _run(nb, {}), bib)
    md = [c.source for c in out.cells if c.cell_type == "markdown"]
    assert "(Smith 2020; Smith and Jones 2021)" in md[1]
    assert "Karpathy" not in md[2], "only works cited on the page are listed"
    assert "Müller et al. (2019)" in md[1]
    refs = md[2]
    assert refs.index("Ann Smith (2020). *A Study of Losses*. J. Learn.") < refs.index("Kai Müller, Wei Li, Eva Diaz (2019)")
    assert not reader.leftover_markup(out)
    assert reader.GLUE_NOTE not in md[0], "a page that pastes no value needs no note"


def test_boxes_math_and_labels(bib):
    nb = _page(["# T", "(defs)=\n:::{admonition} Definitions\n:class: note\nA function is **L-smooth** if {math}`\\|g\\| \\le L`.\n:::",
                "```{math}\nf(x) = x^2\n```\n\nSee {doc}`how_this_book_works`.", "```{note}\nA note.\n```"])
    out = reader.convert(nb, _run(nb, {}), bib)
    md = [c.source for c in out.cells if c.cell_type == "markdown"]
    assert md[1].startswith("> **Definitions**") and "$\\|g\\| \\le L$" in md[1] and ":class:" not in md[1]
    assert "$$\nf(x) = x^2\n$$" in md[2] and "See how_this_book_works." in md[2]
    assert md[3].startswith("> **Note**")
    assert not reader.leftover_markup(out)


def test_outputs_are_stripped_and_the_setup_cell_stays_first(bib):
    nb = _page(["# T"])
    run = _run(nb, {"lr": "0.125"})
    out = reader.convert(run, run, bib)
    code = [c for c in out.cells if c.cell_type == "code"]
    assert code[0].source == nb.cells[1].source and code[0].outputs == [] and code[0].execution_count is None


def test_an_unknown_role_is_reported(bib):
    nb = _page(["# T\n\n{weird}`x`"])
    with pytest.raises(ValueError, match="weird"):
        reader.convert(nb, _run(nb, {}), bib)


def test_leftover_markup_finds_roles_directives_and_labels():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("(x)=\n{glue:text}`a`\n```{note}\nb\n```")])
    found = reader.leftover_markup(nb)
    assert len(found) == 3


def test_latex_in_bibliography_fields_becomes_text(bib):
    assert bib.reference("web2019") == "Andrej Karpathy (2019). *A Recipe*. <https://example.org/recipe>."
