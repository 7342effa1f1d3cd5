"""Code snippets executed inside the bpy subprocesses (see conftest.run_bpy)."""

RENDER_PASS = r'''
import numpy as np, os, tempfile
from bl_ext.user_default.exgs import compositor as _comp

def render_pass(pass_name="Image", scene=None):
    """Render the scene (F12) and return pass ``pass_name`` of the Render Layers node as
    [H,W,4] float32 (row 0 = TOP), read back through the compositor and an EXR file."""
    scene = scene or bpy.context.scene
    tree = _comp.tree_for(scene)
    for n in list(tree.nodes):
        tree.nodes.remove(n)
    rl = tree.nodes.new("CompositorNodeRLayers")
    if pass_name not in rl.outputs:
        raise KeyError(f"{pass_name!r} not in {[o.name for o in rl.outputs if o.enabled]} "
                       f"({scene.render.engine})")
    out_node, out_sock = _comp._output(tree)
    tree.links.new(rl.outputs[pass_name], out_sock)
    scene.render.use_compositing = True
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.image_settings.color_mode = "RGBA"
    scene.view_settings.view_transform = "Standard"
    path = os.path.join(tempfile.mkdtemp(), "pass.exr")
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(path)
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)[::-1]
'''

SETUP_CAMERA = r'''
def add_camera(loc=(0, -4, 0), rot=(1.5707963, 0, 0), lens=50.0, size=(64, 48)):
    sc = bpy.context.scene
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    sc.collection.objects.link(cam)
    sc.camera = cam
    cam.location, cam.rotation_euler = loc, rot
    cam.data.lens = lens
    sc.render.resolution_x, sc.render.resolution_y = size
    sc.render.resolution_percentage = 100
    return cam
'''

ONE_GAUSSIAN = r'''
def one_gaussian_ply(path, capture_xyz, sigma=0.02):
    """A single opaque white isotropic Gaussian at ``capture_xyz`` (capture frame)."""
    from bl_ext.user_default.exgs import plyio
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
             "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    v = np.zeros(1, [(n, "<f4") for n in names])
    v["x"], v["y"], v["z"] = capture_xyz
    for c in range(3):
        v[f"f_dc_{c}"] = (1.0 - 0.5) / 0.28209479177387814
    v["opacity"] = 8.0
    for c in range(3):
        v[f"scale_{c}"] = np.log(sigma)
    v["rot_0"] = 1.0
    plyio.write_ply(path, v)

def centroid(img):
    w = np.asarray(img, np.float64)
    ys, xs = np.mgrid[0:w.shape[0], 0:w.shape[1]]
    return [float((w * xs).sum() / w.sum()) + 0.5, float((w * ys).sum() / w.sum()) + 0.5]
'''
