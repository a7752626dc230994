// A Hugging Face model directory as both sides read it: config.json, and the weights either in one
// model.safetensors or sharded under model.safetensors.index.json ({"weight_map": {tensor: shard file}}).
// The base model's identity is the SHA-256 of model.safetensors; for a sharded model it is the SHA-256 of the
// lines "<shard file> <shard sha256>\n" in file-name order, so a change to any shard changes it.
import { promises as fs } from 'fs';
import * as path from 'path';
import { sha256File, sha256Hex } from './identity';
import { parseModelConfig, type ModelConfig } from './model-config';

export const CONFIG_FILE = 'config.json';
export const MODEL_FILE = 'model.safetensors';
export const MODEL_INDEX_FILE = 'model.safetensors.index.json';

export async function readModelConfig(dir: string): Promise<ModelConfig> {
  return parseModelConfig(JSON.parse(await fs.readFile(path.join(dir, CONFIG_FILE), 'utf8')));
}

const exists = (p: string): Promise<boolean> =>
  fs.stat(p).then(
    () => true,
    () => false,
  );

/** The safetensors files of a model directory, relative names; a shard name that leaves the directory is refused. */
export async function modelWeightFiles(dir: string): Promise<string[]> {
  if (await exists(path.join(dir, MODEL_FILE))) return [MODEL_FILE];
  if (!(await exists(path.join(dir, MODEL_INDEX_FILE)))) throw new Error(`model directory has neither ${MODEL_FILE} nor ${MODEL_INDEX_FILE}`);
  const index = JSON.parse(await fs.readFile(path.join(dir, MODEL_INDEX_FILE), 'utf8')) as { weight_map?: unknown };
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${MODEL_INDEX_FILE}: weight_map must be an object`);
  const files = new Set<string>();
  for (const [tensor, file] of Object.entries(map)) {
    if (typeof file !== 'string' || !/^[A-Za-z0-9._-]+\.safetensors$/.test(file))
      throw new Error(`${MODEL_INDEX_FILE}: tensor ${tensor} maps to a bad shard name`);
    files.add(file);
  }
  if (files.size === 0) throw new Error(`${MODEL_INDEX_FILE}: weight_map is empty`);
  return [...files].sort();
}

/** SHA-256 hex identity of the directory's weights (see the header). */
export async function baseModelHash(dir: string): Promise<string> {
  const files = await modelWeightFiles(dir);
  if (files.length === 1 && files[0] === MODEL_FILE) return sha256File(path.join(dir, MODEL_FILE));
  const lines: string[] = [];
  for (const f of files) lines.push(`${f} ${await sha256File(path.join(dir, f))}\n`);
  return sha256Hex(new TextEncoder().encode(lines.join('')));
}
