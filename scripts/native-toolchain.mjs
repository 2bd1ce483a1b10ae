// What the native module's build needs (native/build.rs): cargo on PATH and the liblz4 library.
// Shared by scripts/prepare.mjs (npm ci) and scripts/build-native.mjs (npm run build:native).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { arch } from 'node:os';
import { join } from 'node:path';

/** Why the native module cannot be built here, or undefined when it can. */
export function nativeToolchainMissing(env = process.env) {
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore', env });
  if (cargo.error || cargo.status !== 0) return 'cargo was not found on PATH (install Rust: https://rustup.rs)';
  const multiarch = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', arm: 'arm-linux-gnueabihf' }[arch()] ?? '';
  const dirs = [env.METAGUARD_LZ4_LIB_DIR, `/usr/lib/${multiarch}`, '/usr/local/lib', '/usr/lib', '/usr/lib64', '/opt/homebrew/lib', '/usr/local/opt/lz4/lib'].filter(Boolean);
  const names = ['liblz4.a', 'liblz4.so', 'liblz4.dylib'];
  if (!dirs.some((d) => names.some((n) => existsSync(join(d, n))))) return 'liblz4 was not found (Debian/Ubuntu: apt-get install liblz4-dev)';
  return undefined;
}
