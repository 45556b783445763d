"""`model.summary()`: a table of the layers, their output shapes and parameter counts.

    Model: "sequential"
    ____________________________________________________________________
     Layer (type)                    Output Shape                Param #
    ====================================================================
     embedding (Embedding)           (None, 20, 16)                1,600
     lstm (LSTM)                     (None, 32)                    6,272
     dense (Dense)                   (None, 10)                      330
    ====================================================================
    Total params: 8,202
    Trainable params: 8,202
    Non-trainable params: 0
    ____________________________________________________________________

A functional model adds its input layers and a "Connected to" column
(`layer[call][output]`, as Keras writes it). A layer called several times
shows the output shape of each call when they differ ("multiple" in Keras).
"""
from .graph import shape_str

__all__ = ["summary_text"]


def _wrap(text, width):
    """Cut `text` into lines of at most `width` characters, at ", " where possible."""
    if len(text) <= width or width <= 0:
        return [text]
    lines, rest = [], text
    while len(rest) > width:
        comma, paren = rest.rfind(", ", 0, width), rest.rfind(" (", 0, width + 1)
        if comma > 0 and comma >= paren:
            lines.append(rest[:comma + 1])
            rest = rest[comma + 2:]
        elif paren > 0:
            lines.append(rest[:paren])
            rest = rest[paren + 1:]
        else:
            lines.append(rest[:width])
            rest = rest[width:]
    lines.append(rest)
    return lines


def _rows(model, functional):
    """(name (type), output shape text, params, connected-to texts) per layer."""
    from .model import Sequential
    nodes_of = {}
    for node in model._nodes:
        nodes_of.setdefault(id(node.layer), []).append(node)
    call_index = {}
    for nodes in nodes_of.values():
        for i, node in enumerate(nodes):
            call_index[id(node)] = i
    rows = []
    layers = model.layers if isinstance(model, Sequential) else model._all_layers
    for layer in layers:
        nodes = nodes_of.get(id(layer))
        if nodes is None:                        # an input layer
            shapes = [shape_str(layer.batch_shape)]
            connected = [""]
        else:
            shapes = []
            for node in nodes:
                s = shape_str(node.output_shapes())
                if s not in shapes:
                    shapes.append(s)
            connected = []
            for node in nodes:
                for t in node.inputs:
                    src = t.node
                    idx = 0 if src.is_input else call_index[id(src)]
                    connected.append(f"{src.layer.name}[{idx}][{t.index}]")
        rows.append((f"{layer.name} ({type(layer).__name__})", " or ".join(shapes),
                     layer.count_params(), connected if functional else []))
    return rows


def summary_text(model, line_length=None, positions=None):
    """The summary table as a str."""
    from .model import Sequential
    functional = not isinstance(model, Sequential)
    line_length = line_length or (110 if functional else 80)
    if positions is None:
        positions = [0.45, 0.82, 1.0] if not functional else [0.34, 0.60, 0.70, 1.0]
    positions = [int(line_length * p) if p <= 1 else int(p) for p in positions]
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if functional else [])
    widths = [positions[0]] + [positions[i] - positions[i - 1] for i in range(1, len(positions))]

    def fmt(cells):
        """One or more printed lines for a row of cells (wrapping long cells)."""
        wrapped = [_wrap(c, w - 2) for c, w in zip(cells, widths)]
        out = []
        for i in range(max(len(w) for w in wrapped)):
            parts = []
            for j, (w, width) in enumerate(zip(wrapped, widths)):
                text = w[i] if i < len(w) else ""
                if j == 2:                             # numbers right-aligned
                    parts.append(text.rjust(width - 2) + "  ")
                else:
                    parts.append(" " + text.ljust(width - 1))
            out.append("".join(parts).rstrip())
        return out

    lines = [f'Model: "{model.name}"', "_" * line_length]
    lines += fmt(headers)
    lines.append("=" * line_length)
    rows = _rows(model, functional)
    for k, (name, shape, params, connected) in enumerate(rows):
        cells = [name, shape, f"{params:,}"]
        if functional:
            cells.append(connected[0] if connected else "")
        lines += fmt(cells)
        for extra in connected[1:]:
            lines += fmt(["", "", "", extra])
        if k < len(rows) - 1:
            lines.append("_" * line_length if functional else "")
    if not functional:
        lines = [l for l in lines if l != ""]
    lines.append("=" * line_length)
    total = model.count_params()
    trainable = int(sum(w.size for w in model.trainable_weights))
    lines.append(f"Total params: {total:,}")
    lines.append(f"Trainable params: {trainable:,}")
    lines.append(f"Non-trainable params: {total - trainable:,}")
    lines.append("_" * line_length)
    return "\n".join(lines)
