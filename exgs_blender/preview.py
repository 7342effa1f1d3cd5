"""Viewport preview of splat objects: a Geometry Nodes modifier turns vertices into points
(radius = ``exgs_radius`` × a scale) with a material showing the SH DC colour
(``exgs_color``, emission so lighting does not change it). Works in Workbench (attribute
colour / material colour), Eevee and Cycles (points render as small spheres).
"""

from __future__ import annotations

import bpy

GROUP = "ExGS Preview"
MATERIAL = "ExGS Splat Preview"
MODIFIER = "ExGS Preview"


def _material():
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL)
    if hasattr(mat, "use_nodes") and not mat.use_nodes:
        try:
            mat.use_nodes = True  # deprecated (always on) in 5.x
        except Exception:
            pass
    nt = mat.node_tree
    nt.nodes.clear()
    attr = nt.nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = "exgs_color"
    emit = nt.nodes.new("ShaderNodeEmission")
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(attr.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    attr.location, emit.location, out.location = (-400, 0), (-150, 0), (100, 0)
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat


def _group():
    ng = bpy.data.node_groups.get(GROUP)
    if ng is not None:
        return ng
    ng = bpy.data.node_groups.new(GROUP, "GeometryNodeTree")
    ng.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    sock = ng.interface.new_socket("Point Scale", in_out="INPUT", socket_type="NodeSocketFloat")
    sock.default_value, sock.min_value = 1.0, 0.0
    ng.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    n = ng.nodes
    gin, gout = n.new("NodeGroupInput"), n.new("NodeGroupOutput")
    named = n.new("GeometryNodeInputNamedAttribute")
    named.data_type = "FLOAT"
    named.inputs["Name"].default_value = "exgs_radius"
    mul = n.new("ShaderNodeMath")
    mul.operation = "MULTIPLY"
    m2p = n.new("GeometryNodeMeshToPoints")
    setmat = n.new("GeometryNodeSetMaterial")
    setmat.inputs["Material"].default_value = _material()
    L = ng.links
    L.new(gin.outputs[0], m2p.inputs["Mesh"])
    L.new(named.outputs["Attribute"], mul.inputs[0])
    L.new(gin.outputs[1], mul.inputs[1])
    L.new(mul.outputs[0], m2p.inputs["Radius"])
    L.new(m2p.outputs["Points"], setmat.inputs["Geometry"])
    L.new(setmat.outputs["Geometry"], gout.inputs[0])
    for i, node in enumerate((gin, named, mul, m2p, setmat, gout)):
        node.location = (i * 200 - 600, 0)
    return ng


def _scale_id(group) -> str | None:
    for item in group.interface.items_tree:
        if getattr(item, "name", "") == "Point Scale" and item.in_out == "INPUT":
            return item.identifier
    return None


def point_scale(mod) -> float:
    """The "Point Scale" of an ExGS preview modifier (1.0 when unset)."""
    key = _scale_id(mod.node_group) if mod.node_group else None
    try:
        return float(mod[key]) if key and key in mod else 1.0
    except (TypeError, KeyError):
        return 1.0


def add_preview(obj, scale: float = 1.0) -> None:
    """Attach the preview modifier + material to a splat object (idempotent)."""
    mod = obj.modifiers.get(MODIFIER) or obj.modifiers.new(MODIFIER, "NODES")
    mod.node_group = _group()
    key = _scale_id(mod.node_group)
    if key:
        mod[key] = float(scale)
    if not obj.data.materials:
        obj.data.materials.append(_material())
