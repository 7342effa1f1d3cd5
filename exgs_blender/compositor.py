"""Wire ExGS image sequences into the compositor: ``scene.node_tree`` (Blender 4.x) or
``scene.compositing_node_group`` (5.x). Optionally Z-combine them with Blender's own render
of the scene's meshes (Render Layers Image/Depth)."""

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


def load_sequence(first_path: str, name: str):
    img = bpy.data.images.load(first_path, check_existing=True)
    img.name = name
    img.source = "SEQUENCE"
    set_linear(img)
    return img


def wire(scene, rgba_first: str, depth_first: str | None, frame_start: int, count: int,
         z_combine: bool = False):
    """Image node (sequence) → output; with ``z_combine``: Z Combine with Render Layers."""
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
    zc = tree.nodes.new("CompositorNodeZcombine")
    zc.name = "ExGS Z Combine"
    zc.location = (0, 0)
    # "Use Alpha" would multiply the (already premultiplied) splat colour by alpha again:
    # keep it off, the nearer pixel wins.
    if hasattr(zc, "use_alpha"):
        zc.use_alpha = False
    elif "Use Alpha" in zc.inputs:
        zc.inputs["Use Alpha"].default_value = False
    L = tree.links
    L.new(rgb.outputs[0], zc.inputs[0])
    L.new(dep.outputs[0], zc.inputs[1])
    L.new(rl.outputs["Image"], zc.inputs[2])
    L.new(rl.outputs["Depth"], zc.inputs[3])
    L.new(zc.outputs[0], out_sock)
    return tree
