import io

from PIL import Image

from cpo_pipeline.concepts.graph import build_concept_graph
from cpo_pipeline.concepts.ontology import load_ontology
from cpo_pipeline.concepts.render import render_graph_png


def test_the_picture_is_a_png_small_enough_for_metadata_and_the_same_every_time():
    graph = build_concept_graph(load_ontology())

    picture = render_graph_png(graph)

    assert Image.open(io.BytesIO(picture)).format == "PNG"
    assert len(picture) < 200_000
    assert render_graph_png(graph) == picture
