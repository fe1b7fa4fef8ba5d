

def test_a_metrics_file_feeds_the_steps_that_read_it(tmp_path) -> None:
    from mlprism import load_pipeline

    spec = tmp_path / "pipeline.yaml"
    spec.write_text(
        "apiVersion: mlprism/v1\nname: mt\nsteps:\n"
        "  a: {run: echo a, metrics: m/a.json}\n"
        "  b: {run: echo b, inputs: [m/a.json], outputs: [b.txt]}\n")
    p = load_pipeline(str(spec))
    assert [(e.source, e.target, e.path) for e in p.edges] == [("a", "b", "m/a.json")]
