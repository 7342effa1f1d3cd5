"""Viewport preview of splat objects: a Geometry Nodes modifier puts a small cube (half
size = ``exgs_radius`` × a scale) on every Gaussian, coloured with the SH DC colour
(``exgs_color``, scene-linear), and a material emitting that colour (lighting does not change
it). Shows the real colours in Solid / Workbench (colour type *Attribute*), Material Preview
(Eevee) and Cycles.

Workbench's *Attribute* colour is the mesh's active colour attribute, and ignores point
clouds; a mesh made by Realize Instances has none. So the group builds fresh points from the
mesh (only position, colour and radius are sampled: the Gaussian attributes are not copied
onto 8 vertices per Gaussian), instances the cube, realizes it, and joins it with the input
mesh stripped of its attributes (its loose vertices draw nothing): the joined mesh keeps the
input's active/default colour name ``exgs_color`` (tested headless on Blender 5.0 and 4.2).
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


#: a node that only the current layout of the group has (older .blend files are rebuilt)
_MARK = "exgs_cube_budget"
#: cubes drawn at most by default (every k-th Gaussian beyond): 8 vertices each, so 300k
#: cost ≈ 2.4M vertices (≈ 0.6 s and 0.5 GB to evaluate) whatever the scene's size
MAX_CUBES = 300_000


def _group():
    ng = bpy.data.node_groups.get(GROUP)
    if ng is not None and ng.nodes.get(_MARK) is not None:
        return ng
    if ng is None:
        ng = bpy.data.node_groups.new(GROUP, "GeometryNodeTree")
        ng.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
        sock = ng.interface.new_socket("Point Scale", in_out="INPUT",
                                       socket_type="NodeSocketFloat")
        sock.default_value, sock.min_value = 1.0, 0.0
        ng.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    if _socket_id(ng, "Max Cubes") is None:
        sock = ng.interface.new_socket("Max Cubes", in_out="INPUT", socket_type="NodeSocketInt")
        sock.default_value, sock.min_value = MAX_CUBES, 0
        sock.description = "Cubes drawn at most (every k-th Gaussian beyond; 0 = all)"
    ng.nodes.clear()  # an older layout (points only: grey in Workbench)
    _build(ng)
    return ng


def _build(ng) -> None:
    n, L = ng.nodes, ng.links
    gin, gout = n.new("NodeGroupInput"), n.new("NodeGroupOutput")
    index = n.new("GeometryNodeInputIndex")

    def math(op, a, b=None):
        m = n.new("ShaderNodeMath")
        m.operation = op
        L.new(a, m.inputs[0])
        if b is not None:
            L.new(b, m.inputs[1])
        return m.outputs[0]

    count = n.new("GeometryNodeAttributeDomainSize")
    count.component = "MESH"
    L.new(gin.outputs[0], count.inputs[0])
    # stride k = max(1, ceil(N / Max Cubes)) (÷0 gives 0: no cap); point i shows Gaussian i·k
    stride = math("MAXIMUM", math("CEIL", math("DIVIDE", count.outputs["Point Count"],
                                               gin.outputs["Max Cubes"])))
    stride.node.inputs[1].default_value = 1.0
    source = math("MULTIPLY", index.outputs[0], stride)

    def sample(field, data_type):
        """``field`` of the input mesh's vertex i·k for the evaluating point i."""
        s = n.new("GeometryNodeSampleIndex")
        s.data_type, s.domain = data_type, "POINT"
        L.new(gin.outputs[0], s.inputs["Geometry"])
        L.new(field, s.inputs["Value"])
        L.new(source, s.inputs["Index"])
        return s.outputs[0]

    def named(name, data_type):
        a = n.new("GeometryNodeInputNamedAttribute")
        a.data_type = data_type
        a.inputs["Name"].default_value = name
        return a.outputs["Attribute"]

    points = n.new("GeometryNodePoints")
    L.new(math("FLOOR", math("DIVIDE", count.outputs["Point Count"], stride)),
          points.inputs["Count"])
    L.new(sample(n.new("GeometryNodeInputPosition").outputs[0], "FLOAT_VECTOR"),
          points.inputs["Position"])
    color = n.new("GeometryNodeStoreNamedAttribute")
    color.data_type, color.domain = "FLOAT_COLOR", "POINT"
    color.inputs["Name"].default_value = "exgs_color"
    L.new(points.outputs[0], color.inputs["Geometry"])
    L.new(sample(named("exgs_color", "FLOAT_COLOR"), "FLOAT_COLOR"), color.inputs["Value"])
    mul = n.new("ShaderNodeMath")
    mul.operation = "MULTIPLY"
    L.new(sample(named("exgs_radius", "FLOAT"), "FLOAT"), mul.inputs[0])
    L.new(gin.outputs[1], mul.inputs[1])
    cube = n.new("GeometryNodeMeshCube")
    cube.inputs["Size"].default_value = (2.0, 2.0, 2.0)  # half size 1 × radius
    inst = n.new("GeometryNodeInstanceOnPoints")
    inst.name = _MARK
    L.new(color.outputs[0], inst.inputs["Points"])
    L.new(cube.outputs["Mesh"], inst.inputs["Instance"])
    L.new(mul.outputs[0], inst.inputs["Scale"])
    real = n.new("GeometryNodeRealizeInstances")
    L.new(inst.outputs[0], real.inputs[0])
    strip = n.new("GeometryNodeRemoveAttribute")  # every attribute; keeps the colour names
    if hasattr(strip, "pattern_mode"):  # 4.2-4.x: a node property
        strip.pattern_mode = "WILDCARD"
    elif "Pattern Mode" in strip.inputs:  # 5.x: a menu socket
        strip.inputs["Pattern Mode"].default_value = "Wildcard"
    strip.inputs["Name"].default_value = "*"
    L.new(gin.outputs[0], strip.inputs[0])
    join = n.new("GeometryNodeJoinGeometry")
    L.new(real.outputs[0], join.inputs[0])
    L.new(strip.outputs[0], join.inputs[0])
    setmat = n.new("GeometryNodeSetMaterial")
    setmat.inputs["Material"].default_value = _material()
    L.new(join.outputs[0], setmat.inputs["Geometry"])
    L.new(setmat.outputs["Geometry"], gout.inputs[0])
    for i, node in enumerate((gin, count, points, color, inst, real, join, setmat, gout)):
        node.location = (i * 200 - 800, 0)


def _socket_id(group, name: str) -> str | None:
    for item in group.interface.items_tree:
        if getattr(item, "name", "") == name and item.in_out == "INPUT":
            return item.identifier
    return None


def _scale_id(group) -> str | None:
    return _socket_id(group, "Point Scale")


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


def use_attribute_colours(context) -> int:
    """Show the preview's colours in Solid shading: every 3D view of the screen and the scene's
    Workbench settings whose colour type is *Material* (the default: the grey material
    colour) switch to *Attribute* (enum ``VERTEX``). Other choices are left alone. Returns
    how many settings changed."""
    shadings = [context.scene.display.shading] if context.scene else []
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen else ():
        shadings += [s.shading for s in area.spaces if s.type == "VIEW_3D"]
    changed = 0
    for sh in shadings:
        if sh.color_type == "MATERIAL":
            sh.color_type = "VERTEX"
            changed += 1
    return changed
