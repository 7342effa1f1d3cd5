"""Wire ExGS image sequences into the compositor: ``scene.node_tree`` (Blender 4.x) or
``scene.compositing_node_group`` (5.x). Optionally depth-composite them with Blender's own
render of the scene's meshes (Render Layers Image/Depth).

The depth composite is a premultiplied "over" in depth order, per pixel: with S, M the
premultiplied RGBA of the splats and of the meshes, d_s their depth, d_m the meshes' depth
taken as the minimum over the 3×3 neighbourhood (Blender's Depth pass is not anti-aliased:
a mesh edge pixel whose centre misses the mesh would otherwise count as background, and
where the mesh has no coverage the order does not matter) and k = [d_s < d_m] (1 where the
splats are nearer)::

    out = S + (1 − a_s)·M   if k          (splats over meshes)
    out = M + (1 − a_m)·S   otherwise     (meshes over splats)
        = S·w_s + M·w_m,    w_s = 1 − (1 − k)·a_m,   w_m = 1 − k·a_s

built from Separate/Combine Color and Math nodes (the same formula on Blender 4.2 and 5.x;
``reference_over`` is the numpy twin the tests compare with). A plain Z Combine keeps the
nearer pixel only (hard edges) or, with "Use Alpha", mixes by the straight alpha of an
already premultiplied colour, which leaves dark or light fringes where splats cross meshes.
"""

from __future__ import annotations

import bpy

TREE_NAME = "ExGS Compositing"


def set_linear(img) -> None:
    """Mark an image as scene-linear (the default for new float images differs by version)."""
    for name in ("Linear Rec.709", "Linear"):
        try:
            img.colorspace_settings.name = name
            return
        except TypeError:
            continue


def tree_for(scene):
    """The scene's compositing node tree (created when missing)."""
    if hasattr(scene, "compositing_node_group"):  # 5.x
        ng = scene.compositing_node_group
        if ng is None:
            ng = bpy.data.node_groups.new(TREE_NAME, "CompositorNodeTree")
            scene.compositing_node_group = ng
        return ng
    scene.use_nodes = True
    return scene.node_tree


def _output(tree):
    """(node, input socket) that is the compositor's final output."""
    if hasattr(bpy.types, "CompositorNodeComposite"):
        node = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeComposite"), None)
        node = node or tree.nodes.new("CompositorNodeComposite")
        return node, node.inputs[0]
    if not any(i.in_out == "OUTPUT" for i in tree.interface.items_tree
               if getattr(i, "item_type", "SOCKET") == "SOCKET"):
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    node = next((n for n in tree.nodes if n.bl_idname == "NodeGroupOutput"), None)
    node = node or tree.nodes.new("NodeGroupOutput")
    return node, node.inputs[0]


def _sequence_node(tree, image, frame_start, count, label):
    node = tree.nodes.new("CompositorNodeImage")
    node.image = image
    node.label = label
    node.frame_duration = count
    node.frame_start = frame_start
    node.frame_offset = frame_start - 1  # files are numbered by scene frame
    node.use_auto_refresh = True
    return node


def reference_over(s_rgba, s_depth, m_rgba, m_depth):
    """numpy reference of the node graph: [H,W,4] premultiplied × 2 + depths [H,W] →
    [H,W,4] (see the module docstring)."""
    import numpy as np
    p = np.pad(np.asarray(m_depth, np.float64), 1, mode="edge")
    h, w = np.shape(m_depth)
    dm = np.min([p[i:i + h, j:j + w] for i in range(3) for j in range(3)], 0)
    k = (np.asarray(s_depth) < dm).astype(np.float64)[..., None]
    a_s, a_m = s_rgba[..., 3:4], m_rgba[..., 3:4]
    return s_rgba * (1.0 - (1.0 - k) * a_m) + m_rgba * (1.0 - k * a_s)


def _math_idname() -> str:
    return "CompositorNodeMath" if hasattr(bpy.types, "CompositorNodeMath") else "ShaderNodeMath"


def _math(tree, op, a, b, c=None, loc=(0, 0)):
    """A Math node ``op(a, b[, c])``; each operand a socket or a number → its output."""
    n = tree.nodes.new(_math_idname())
    n.operation = op
    n.name = f"ExGS {op.title()}"
    n.location = loc
    for i, v in enumerate((a, b, c)):
        if v is None:
            continue
        if isinstance(v, (int, float)):
            n.inputs[i].default_value = float(v)
        else:
            tree.links.new(v, n.inputs[i])
    return n.outputs[0]


def _erode(tree, depth, loc):
    """Minimum of ``depth`` over each pixel's 3×3 neighbourhood (Dilate/Erode, step mode,
    size −1: a ``distance`` property on 4.x, a ``Size`` input on 5.x)."""
    n = tree.nodes.new("CompositorNodeDilateErode")
    n.name = "ExGS Depth Min"
    n.location = loc
    if "Size" in n.inputs:
        n.inputs["Size"].default_value = -1
        if "Type" in n.inputs:
            n.inputs["Type"].default_value = "Steps"
    else:
        n.mode, n.distance = "STEP", -1
    tree.links.new(depth, n.inputs[0])
    return n.outputs[0]


def depth_over(tree, s_image, s_depth, m_image, m_depth):
    """Nodes computing the depth-ordered premultiplied over of two RGBA images → output
    socket (see the module docstring)."""
    x = 0
    sep_s = tree.nodes.new("CompositorNodeSeparateColor")
    sep_m = tree.nodes.new("CompositorNodeSeparateColor")
    for n, img, y in ((sep_s, s_image, 200), (sep_m, m_image, -200)):
        n.name = "ExGS Separate"
        n.location = (x, y)
        tree.links.new(img, n.inputs[0])
    k = _math(tree, "LESS_THAN", s_depth, _erode(tree, m_depth, (x - 200, -300)), loc=(x, 0))
    w_s = _math(tree, "SUBTRACT", 1.0, _math(tree, "MULTIPLY", _math(
        tree, "SUBTRACT", 1.0, k, loc=(x + 200, 0)), sep_m.outputs[3], loc=(x + 400, 0)),
        loc=(x + 600, 0))
    w_m = _math(tree, "SUBTRACT", 1.0, _math(tree, "MULTIPLY", k, sep_s.outputs[3],
                                             loc=(x + 400, -100)), loc=(x + 600, -100))
    comb = tree.nodes.new("CompositorNodeCombineColor")
    comb.name = "ExGS Combine"
    comb.location = (x + 1200, 0)
    for c in range(4):
        m_c = _math(tree, "MULTIPLY", sep_m.outputs[c], w_m, loc=(x + 800, -150 * c))
        out_c = _math(tree, "MULTIPLY_ADD", sep_s.outputs[c], w_s, m_c, loc=(x + 1000, -150 * c))
        tree.links.new(out_c, comb.inputs[c])
    return comb.outputs[0]


def load_sequence(first_path: str, name: str):
    img = bpy.data.images.load(first_path, check_existing=True)
    img.name = name
    img.source = "SEQUENCE"
    set_linear(img)
    return img


def wire(scene, rgba_first: str, depth_first: str | None, frame_start: int, count: int,
         z_combine: bool = False):
    """Image node (sequence) → output; with ``z_combine``: depth-ordered premultiplied over
    with Render Layers (:func:`depth_over`)."""
    tree = tree_for(scene)
    for n in [n for n in tree.nodes if n.name.startswith("ExGS")]:
        tree.nodes.remove(n)
    img = load_sequence(rgba_first, "ExGS frames")
    rgb = _sequence_node(tree, img, frame_start, count, "ExGS frames")
    rgb.name = "ExGS Frames"
    rgb.location = (-500, 200)
    out_node, out_sock = _output(tree)
    out_node.location = (300, 0)
    if not z_combine:
        tree.links.new(rgb.outputs[0], out_sock)
        return tree
    dimg = load_sequence(depth_first, "ExGS depth")
    try:
        dimg.colorspace_settings.is_data = True
    except Exception:
        pass
    dep = _sequence_node(tree, dimg, frame_start, count, "ExGS depth")
    dep.name = "ExGS Depth"
    dep.location = (-500, -100)
    rl = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None)
    rl = rl or tree.nodes.new("CompositorNodeRLayers")
    rl.location = (-500, -400)
    scene.view_layers[0].use_pass_z = True
    L = tree.links
    L.new(depth_over(tree, rgb.outputs[0], dep.outputs[0], rl.outputs["Image"],
                     rl.outputs["Depth"]), out_sock)
    out_node.location = (1600, 0)
    return tree
