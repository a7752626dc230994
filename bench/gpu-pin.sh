# Sourced by the quality runs on a GPU machine of several GPUs (bench/quality-run22.sh): lets each cell process use a
# GPU of its own. Dawn (npm `webgpu`) takes the first Vulkan adapter and can tell two H200s apart by no flag (its
# `adapter=` flag matches a name, and both are "NVIDIA H200"), and NVIDIA's Vulkan driver ignores CUDA_VISIBLE_DEVICES.
# Mesa's device-select layer (a Vulkan implicit layer, any vendor's driver beneath it) reorders the physical devices
# so that the one named by DRI_PRIME=pci-DDDD_BB_dd_f comes first, and MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1
# hides the others. The layer is not part of the product: FEDTUNE_VK_LAYER_DIR names a folder carried to the machine
# holding libVkLayer_MESA_device_select.so (Debian's mesa-vulkan-drivers) and the libraries it links to.
# Sets GPU_TAGS to one DRI_PRIME tag per GPU once a probe has seen a process land on the GPU its tag names; leaves it
# empty otherwise (then every cell shares the first GPU, as before).
# Run 25 (bench/QUALITY.md): pinning held on the two-H200 machine, yet the cells ran there ~5× slower than ten at once
# on the one-H200 machine, so it is kept for a later try, not as the plan for a call.
GPU_TAGS=
gpu_pin_probe() { # tag: opens the engine's device there and holds 1 GiB for 8 s
  DRI_PRIME=$1 MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1 node -e "
    require('./dist/client-sdk/engine/device.js').openEngineDevice().then(async (e) => {
      if ('error' in e) { console.error(e.error); process.exit(1); }
      const b = e.device.createBuffer({ size: 2 ** 30, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      e.device.queue.writeBuffer(b, 2 ** 30 - 4096, new Uint8Array(4096));
      await e.device.queue.onSubmittedWorkDone();
      await new Promise((r) => setTimeout(r, 8000));
      process.exit(0);
    });"
}
gpu_pin_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | tr '\n' ' '; }
if [ -n "${FEDTUNE_VK_LAYER_DIR:-}" ] && [ -f "$FEDTUNE_VK_LAYER_DIR/libVkLayer_MESA_device_select.so" ] &&
  [ "$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)" -gt 1 ]; then
  # Only the libraries the machine lacks go on the library path, so that none of its own is shadowed.
  mkdir -p /tmp/vk-layer-deps /etc/vulkan/implicit_layer.d
  for l in $(ldd "$FEDTUNE_VK_LAYER_DIR/libVkLayer_MESA_device_select.so" | awk '/not found/ {print $1}'); do
    ln -sf "$FEDTUNE_VK_LAYER_DIR/$l" /tmp/vk-layer-deps/
  done
  export LD_LIBRARY_PATH=/tmp/vk-layer-deps${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  printf '{"file_format_version":"1.0.0","layer":{"name":"VK_LAYER_MESA_device_select","type":"GLOBAL","library_path":"%s","api_version":"1.3.239","implementation_version":"1","description":"device selection","functions":{"vkNegotiateLoaderLayerInterfaceVersion":"vkNegotiateLoaderLayerInterfaceVersion"},"disable_environment":{"NODEVICE_SELECT":"1"}}}\n' \
    "$(readlink -f "$FEDTUNE_VK_LAYER_DIR")/libVkLayer_MESA_device_select.so" >/etc/vulkan/implicit_layer.d/fedtune_device_select.json
  # nvidia-smi's 00000000:18:00.0 is the layer's pci-0000_18_00_0.
  tags=$(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader | awk -F'[:.]' '{printf "pci-%s_%s_%s_%s\n", tolower(substr($1, length($1) - 3)), tolower($2), tolower($3), $4}')
  i=0
  ok=1
  for t in $tags; do
    before=($(gpu_pin_used))
    gpu_pin_probe "$t" &
    sleep 5
    during=($(gpu_pin_used))
    wait
    rose=-1
    for j in "${!before[@]}"; do [ $((during[j] - before[j])) -ge 500 ] && rose=$j; done
    echo "gpu-pin: $t (GPU $i): memory before ${before[*]} MiB, during ${during[*]} MiB: landed on GPU $rose" >&2
    [ "$rose" = "$i" ] || ok=0
    i=$((i + 1))
  done
  if [ "$ok" = 1 ]; then GPU_TAGS=$(echo $tags); else rm -f /etc/vulkan/implicit_layer.d/fedtune_device_select.json; fi
fi
echo "gpu-pin: ${GPU_TAGS:-every cell on the first GPU}" >&2
export GPU_TAGS
