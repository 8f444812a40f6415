// Field types (`t.*`), their modifiers and constraints, and the `Infer<>` machinery. A type
// is an immutable description (`FieldSpec`) wrapped in a class that carries its TypeScript
// value type; every builder call returns a new instance.

export type FieldKind =
  | 'int' | 'bigint' | 'float' | 'string' | 'bool' | 'timestamp' | 'uuid' | 'bytes' | 'json'
  | 'list' | 'object' | 'enum';

export interface Constraints {
  min?: number;
  max?: number;
  minLength?: number;
  maxLength?: number;
  regex?: { source: string; flags: string };
  email?: boolean;
  url?: boolean;
  nonEmpty?: boolean;
}

export interface FieldSpec {
  readonly kind: FieldKind;
  readonly optional: boolean;
  readonly hasDefault: boolean;
  readonly defaultValue?: unknown;
  readonly constraints: Readonly<Constraints>;
  readonly element?: FieldSpec;
  readonly shape?: Readonly<Record<string, FieldSpec>>;
  readonly values?: readonly string[];
}

export class FieldType<Out, Optional extends boolean = false, Defaulted extends boolean = false> {
  /** @internal type carriers, never set at run time */
  declare readonly __out: Out;
  declare readonly __optional: Optional;
  declare readonly __defaulted: Defaulted;

  constructor(readonly spec: FieldSpec) {}

  /** The field may be absent (or `undefined`). */
  optional(): FieldType<Out, true, Defaulted> {
    return new FieldType({ ...this.spec, optional: true });
  }

  /** Value stored when a write leaves the field out. */
  default(value: Out): FieldType<Out, Optional, true> {
    return new FieldType({ ...this.spec, hasDefault: true, defaultValue: value });
  }

  /** Smallest allowed value (numbers, timestamps as ms or Date). */
  min(n: number | Date): this { return this.with({ min: n instanceof Date ? n.getTime() : n }); }
  /** Largest allowed value (numbers, timestamps as ms or Date). */
  max(n: number | Date): this { return this.with({ max: n instanceof Date ? n.getTime() : n }); }
  /** Shortest length (strings in characters, lists in items, bytes in bytes). */
  minLength(n: number): this { return this.with({ minLength: n }); }
  maxLength(n: number): this { return this.with({ maxLength: n }); }
  regex(re: RegExp): this { return this.with({ regex: { source: re.source, flags: re.flags.replace(/[gy]/g, '') } }); }
  email(): this { return this.with({ email: true }); }
  url(): this { return this.with({ url: true }); }
  nonEmpty(): this { return this.with({ nonEmpty: true }); }

  private with(c: Constraints): this {
    return new FieldType({ ...this.spec, constraints: { ...this.spec.constraints, ...c } }) as this;
  }
}

export type AnyField = FieldType<any, boolean, boolean>;
export type Shape = Record<string, AnyField>;

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends FieldType<any, true, any> ? K : never }[keyof S];
type InputOptionalKeys<S extends Shape> = {
  [K in keyof S]: S[K] extends FieldType<any, true, any> ? K : S[K] extends FieldType<any, any, true> ? K : never;
}[keyof S];

export type OutputOf<F> = F extends FieldType<infer O, any, any> ? O : never;

/** The row type of a shape: optional fields may be absent. */
export type InferShape<S extends Shape> = Simplify<
  { [K in Exclude<keyof S, OptionalKeys<S>>]: OutputOf<S[K]> } & { [K in OptionalKeys<S>]?: OutputOf<S[K]> | undefined }
>;

/** What a write accepts: fields with a default may be left out too. */
export type InferInputShape<S extends Shape> = Simplify<
  { [K in Exclude<keyof S, InputOptionalKeys<S>>]: OutputOf<S[K]> } & { [K in InputOptionalKeys<S>]?: OutputOf<S[K]> | undefined }
>;

const base = (kind: FieldKind, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  kind, optional: false, hasDefault: false, constraints: {}, ...extra,
});

export const t = {
  /** Safe integer (number). */
  int: () => new FieldType<number>(base('int')),
  /** 64-bit signed integer (bigint). */
  bigint: () => new FieldType<bigint>(base('bigint')),
  /** 64-bit float; NaN, ±Infinity and -0 round-trip. */
  float: () => new FieldType<number>(base('float')),
  string: () => new FieldType<string>(base('string')),
  bool: () => new FieldType<boolean>(base('bool')),
  /** Date in, Date out (millisecond precision). */
  timestamp: () => new FieldType<Date>(base('timestamp')),
  /** Canonical lowercase UUID string. */
  uuid: () => new FieldType<string>(base('uuid')),
  bytes: () => new FieldType<Uint8Array>(base('bytes')),
  /** Any msgpack-encodable value. */
  json: <T = unknown>() => new FieldType<T>(base('json')),
  list: <F extends AnyField>(element: F) => new FieldType<OutputOf<F>[]>(base('list', { element: element.spec })),
  object: <S extends Shape>(shape: S) =>
    new FieldType<InferShape<S>>(base('object', { shape: Object.fromEntries(Object.entries(shape).map(([k, f]) => [k, f.spec])) })),
  enum: <const V extends readonly [string, ...string[]]>(values: V) => new FieldType<V[number]>(base('enum', { values: [...values] })),
};
