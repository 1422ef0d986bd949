// The one WebAssembly type the public declarations name, declared for consumers whose TypeScript has
// neither the DOM lib nor a @types/node that declares WebAssembly (Node 20's does not): without it,
// `Slab.memory` and `Kernels` fail to compile under `strict` unless the consumer adds `lib: DOM` or
// `skipLibCheck`. Only an interface is declared, with the members and types the DOM lib gives it, so
// it merges with theirs where they exist; no value (`new WebAssembly.Memory`) is declared here.

declare global {
  namespace WebAssembly {
    interface Memory {
      readonly buffer: ArrayBuffer;
      grow(delta: number): number;
    }
  }
}

export {};
