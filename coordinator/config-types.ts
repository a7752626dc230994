// The coordinator's configuration as the rest of the code sees it: derived from the convict schema
// (config-schema.ts), whose `doc` strings document every key. A key whose format is a list of names is that
// union of names; any other key has the (widened) type of its default.
import type { schema } from './config-schema';

type Widen<T> = T extends string ? string : T extends number ? number : T extends boolean ? boolean : T extends readonly (infer E)[] ? readonly Widen<E>[] : T;
type ValueOf<L> = L extends { readonly format: readonly (infer E extends string)[] } ? E : L extends { readonly default: infer D } ? Widen<D> : never;
type FromSchema<S> = { readonly [Section in keyof S]: { readonly [Key in keyof S[Section]]: ValueOf<S[Section][Key]> } };

export type CoordinatorConfig = FromSchema<typeof schema>;
export type LoraSettings = CoordinatorConfig['lora'];
export type TrainingSettings = CoordinatorConfig['training'];
export type TlsSettings = CoordinatorConfig['tls'];
