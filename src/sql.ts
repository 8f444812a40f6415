// SQL front end: SELECT [DISTINCT] ... FROM ... [JOIN ... ON a = b] [WHERE ...] [GROUP BY ...]
// [HAVING ...] [ORDER BY ...] [LIMIT n] [OFFSET n], values only as `?` parameters. "Quoted"
// identifiers, -- and /* */ comments and one trailing semicolon are accepted. It builds the
// same query object as the builder, so both compile onto the same plan and operators.
import { ModelVaultError } from '../storage/errors.js';
import type { AggregateSpec } from '../operators/aggregate-op.js';
import type { CmpOp, Expr } from '../operators/expr.js';
import type { Model } from './model.js';
import type { FieldSpec } from './types.js';
import { Query, emptyState, type QueryHost, type QueryState } from './query.js';

/** `quoted`: a "quoted" identifier, never a keyword. */
interface Token { kind: 'id' | 'num' | 'str' | 'param' | 'sym' | 'end'; text: string; pos: number; quoted?: boolean }

const MAX_SQL_LENGTH = 100_000;
const MAX_DEPTH = 64;

function syntax(pos: number, message: string): ModelVaultError {
  return new ModelVaultError('VALIDATION', `SQL syntax error at position ${pos}: ${message}`, { path: 'sql', position: pos });
}

/** The text between the quote at `start` and its closing twin (a doubled quote stands for one); `end` is past it. */
function quoted(text: string, start: number, what: string): { value: string; end: number } {
  const q = text[start];
  let value = '';
  for (let i = start + 1; ;) {
    if (i >= text.length) throw syntax(start, `unterminated ${what}`);
    if (text[i] === q) {
      if (text[i + 1] !== q) return { value, end: i + 1 };
      value += q;
      i += 2;
      continue;
    }
    value += text[i++];
  }
}

function tokenize(text: string, literals: boolean): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) { i++; continue; }
    const start = i;
    if (c === '-' && text[i + 1] === '-') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      if (end < 0) throw syntax(start, 'unterminated /* comment');
      i = end + 2;
      continue;
    }
    if (c === '"') {
      // A quoted identifier: a name, whatever its spelling.
      const { value, end } = quoted(text, start, 'quoted identifier');
      if (value === '') throw syntax(start, 'empty quoted identifier');
      out.push({ kind: 'id', text: value, pos: start, quoted: true });
      i = end;
      continue;
    }
    if (c === ';') {
      // One statement: a semicolon may end it, with nothing but blanks and comments after.
      out.push({ kind: 'end', text: ';', pos: i++ });
      const rest = tokenize(text.slice(i), literals);
      if (rest.length > 1 || rest[0].text === ';') throw syntax(i + rest[0].pos, 'only one statement is allowed, after ;');
      return out;
    }
    if (/[A-Za-z_]/.test(c)) {
      while (i < text.length && /[A-Za-z0-9_.]/.test(text[i])) i++;
      out.push({ kind: 'id', text: text.slice(start, i), pos: start });
    } else if (/[0-9]/.test(c) || (literals && c === '-' && /[0-9]/.test(text[i + 1] ?? ''))) {
      i++;
      while (i < text.length && /[0-9]/.test(text[i])) i++;
      if (literals && text[i] === '.' && /[0-9]/.test(text[i + 1] ?? '')) { i++; while (i < text.length && /[0-9eE+-]/.test(text[i])) i++; }
      out.push({ kind: 'num', text: text.slice(start, i), pos: start });
    } else if (literals && c === "'") {
      const { value, end } = quoted(text, start, 'string');
      out.push({ kind: 'str', text: value, pos: start });
      i = end;
    } else if (c === '?') {
      out.push({ kind: 'param', text: '?', pos: i++ });
    } else if (c === "'") {
      throw syntax(start, 'literal values are not accepted; pass them as ? parameters');
    } else {
      const two = text.slice(i, i + 2);
      if (['<=', '>=', '!=', '<>'].includes(two)) { out.push({ kind: 'sym', text: two === '<>' ? '!=' : two, pos: i }); i += 2; }
      else if ('(),*=<>'.includes(c)) out.push({ kind: 'sym', text: c, pos: i++ });
      else throw syntax(start, `unexpected character ${JSON.stringify(c)}`);
    }
  }
  out.push({ kind: 'end', text: '', pos: text.length });
  return out;
}

const AGGS: Record<string, AggregateSpec['fn']> = { COUNT: 'count', SUM: 'sum', AVG: 'avg', MIN: 'min', MAX: 'max' };

interface SelectItem { path?: string; agg?: AggregateSpec; alias?: string; pos: number }

/**
 * `literals` (command line only) also accepts numbers and 'strings' as values, coerced to the
 * field's type (a string becomes a Date for a timestamp field).
 */
export function compileSql(text: string, params: readonly unknown[], modelFor: (name: string) => Model, host: QueryHost, opts: { literals?: boolean } = {}): Query<Record<string, unknown>> {
  if (typeof text !== 'string') throw new ModelVaultError('VALIDATION', 'sql() needs a string', { path: 'sql' });
  if (text.length > MAX_SQL_LENGTH) throw new ModelVaultError('VALIDATION', `SQL text longer than ${MAX_SQL_LENGTH} characters`, { path: 'sql' });
  if (!Array.isArray(params)) throw new ModelVaultError('VALIDATION', 'sql() parameters must be an array', { path: 'params' });
  const literals = opts.literals ?? false;
  const toks = tokenize(text, literals);
  let p = 0;
  let paramIndex = 0;
  /** Parsing HAVING: operands may be aggregate calls and SELECT aliases. */
  let havingMode = false;
  const peek = () => toks[p];
  const isKw = (kw: string, t = peek()) => t.kind === 'id' && !t.quoted && t.text.toUpperCase() === kw;
  const eatKw = (kw: string) => { if (isKw(kw)) { p++; return true; } return false; };
  const expectKw = (kw: string) => { if (!eatKw(kw)) throw syntax(peek().pos, `expected ${kw}${peek().text ? `, found ${peek().text}` : ''}`); };
  const eatSym = (s: string) => { if (peek().kind === 'sym' && peek().text === s) { p++; return true; } return false; };
  const expectSym = (s: string) => { if (!eatSym(s)) throw syntax(peek().pos, `expected ${s}${peek().text ? `, found ${peek().text}` : ''}`); };
  const ident = (what: string) => {
    const t = peek();
    if (t.kind !== 'id' || (!t.quoted && RESERVED.has(t.text.toUpperCase()))) throw syntax(t.pos, `expected ${what}${t.text ? `, found ${t.text}` : ''}`);
    p++;
    return t.text;
  };
  const param = (): unknown => {
    const t = peek();
    if (literals && (t.kind === 'num' || t.kind === 'str')) { p++; return t.kind === 'num' ? { literal: Number(t.text) } : { literal: t.text }; }
    if (literals && t.kind === 'id' && ['TRUE', 'FALSE'].includes(t.text.toUpperCase())) { p++; return { literal: t.text.toUpperCase() === 'TRUE' }; }
    if (t.kind !== 'param') throw syntax(t.pos, `expected ${literals ? 'a value' : 'a ? parameter'}${t.text ? `, found ${t.text}` : ''}`);
    p++;
    if (paramIndex >= params.length) throw new ModelVaultError('VALIDATION', `SQL has more ? parameters than the ${params.length} given`, { path: 'params', position: t.pos });
    return params[paramIndex++];
  };
  const integer = (what: string) => {
    const t = peek();
    if (t.kind === 'num') { p++; return Number(t.text); }
    if (t.kind === 'param') {
      const v = param();
      // Checked here: a non-number would otherwise be dropped silently (no limit at all).
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
        throw new ModelVaultError('VALIDATION', `${what} must be a non-negative integer, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`, { path: 'params', position: t.pos });
      }
      return v;
    }
    throw syntax(t.pos, `expected a number or ? for ${what}`);
  };

  /** An aggregate call (COUNT(*), SUM(path), COUNT(DISTINCT path), ...) if one comes next. */
  const aggCall = (): AggregateSpec | null => {
    const t = peek();
    const fn = t.kind === 'id' ? AGGS[t.text.toUpperCase()] : undefined;
    if (!fn || toks[p + 1].kind !== 'sym' || toks[p + 1].text !== '(') return null;
    p += 2;
    let agg: AggregateSpec;
    if (fn === 'count' && eatSym('*')) agg = { fn: 'count' };
    else if (fn === 'count' && eatKw('DISTINCT')) agg = { fn: 'countDistinct', path: ident('a column') };
    else agg = { fn, path: ident('a column') };
    expectSym(')');
    return agg;
  };

  expectKw('SELECT');
  const distinct = eatKw('DISTINCT');
  const items: SelectItem[] = [];
  let star = false;
  if (eatSym('*')) star = true;
  else {
    do {
      const t = peek();
      const agg = aggCall();
      if (agg) {
        items.push({ agg, alias: eatKw('AS') ? resultName() : undefined, pos: t.pos });
      } else {
        items.push({ path: ident('a column'), alias: eatKw('AS') ? resultName() : undefined, pos: t.pos });
      }
    } while (eatSym(','));
  }
  expectKw('FROM');
  const tableTok = peek();
  const table = ident('a collection name');
  let model: Model;
  try { model = modelFor(table); } catch (err) { throw withPos(err, tableTok.pos); }
  const baseAlias = aliasAfter();
  const joins: { model: Model; as: string; left: string; right: string; type: 'inner' | 'left'; pos: number }[] = [];
  for (;;) {
    const pos = peek().pos;
    let type: 'inner' | 'left' | null = null;
    if (eatKw('LEFT')) { eatKw('OUTER'); type = 'left'; expectKw('JOIN'); }
    else if (eatKw('INNER')) { type = 'inner'; expectKw('JOIN'); }
    else if (eatKw('JOIN')) type = 'inner';
    if (!type) break;
    const nameTok = peek();
    const name = ident('a collection name');
    let right: Model;
    try { right = modelFor(name); } catch (err) { throw withPos(err, nameTok.pos); }
    const as = aliasAfter() ?? name;
    expectKw('ON');
    const a = ident('a column');
    expectSym('=');
    const b = ident('a column');
    const [left, r] = a.startsWith(`${as}.`) ? [b, a] : [a, b];
    if (!r.startsWith(`${as}.`)) throw syntax(pos, `JOIN ... ON needs one side on ${as}`);
    joins.push({ model: right, as, left: stripBase(left), right: r.slice(as.length + 1), type, pos });
  }
  let where: Expr | null = null;
  if (eatKw('WHERE')) where = orExpr(0);
  if (where && literals) where = coerceLiterals(where, (path) => fieldSpec(path));
  let groupBy: string[] | null = null;
  if (eatKw('GROUP')) {
    expectKw('BY');
    groupBy = [];
    do groupBy.push(stripBase(ident('a column'))); while (eatSym(','));
  }
  // HAVING: its aggregate calls name SELECT items with the same call, or aggregates computed
  // only for it (not returned).
  const hiddenAggs: { name: string; agg: AggregateSpec }[] = [];
  let having: Expr | null = null;
  if (isKw('HAVING')) {
    if (!groupBy && !items.some((i) => i.agg)) throw syntax(peek().pos, 'HAVING needs GROUP BY or aggregates');
    p++;
    havingMode = true;
    having = orExpr(0);
    havingMode = false;
    if (literals) having = coerceLiterals(having, (path) => ((groupBy ?? []).includes(path) ? fieldSpec(path) : undefined));
  }
  const order: { path: string; desc: boolean }[] = [];
  if (eatKw('ORDER')) {
    expectKw('BY');
    do {
      let path: string;
      const t = peek();
      if (t.kind === 'num') {
        // ORDER BY 2: the second SELECT item.
        p++;
        const n = Number(t.text);
        if (star || !Number.isInteger(n) || n < 1 || n > items.length) throw syntax(t.pos, `ORDER BY ${t.text} names no SELECT item (${star ? 'SELECT * lists none' : `there are ${items.length}`})`);
        const item = items[n - 1];
        path = item.agg ? aggName(item) : stripBase(item.path!);
      } else if (groupBy || items.some((i) => i.agg)) {
        path = havingOperand(); // also an aggregate call: ORDER BY COUNT(*) DESC
      } else {
        const name = ident('a column');
        // A select item's alias orders by what it names.
        const aliased = items.find((i) => i.path && i.alias === name);
        path = stripBase(aliased ? aliased.path! : name);
      }
      const desc = eatKw('DESC') ? true : (eatKw('ASC'), false);
      order.push({ path, desc });
    } while (eatSym(','));
  }
  let limit = Infinity, offset = 0;
  if (eatKw('LIMIT')) limit = integer('LIMIT');
  if (eatKw('OFFSET')) offset = integer('OFFSET');
  if (peek().kind !== 'end') throw syntax(peek().pos, `unexpected ${peek().text}`);
  if (paramIndex !== params.length) throw new ModelVaultError('VALIDATION', `SQL uses ${paramIndex} ? parameters but ${params.length} were given`, { path: 'params' });

  let q = new Query<Record<string, unknown>>(host, emptyState(model));
  for (const j of joins) q = q.join(j.model, j.left, j.right, { as: j.as, type: j.type }) as never;
  if (where) q = new Query(host, { ...q.state, where: [where] } satisfies QueryState);
  const aggItems = items.filter((i) => i.agg);
  if (distinct) {
    // SELECT DISTINCT a, b is a GROUP BY a, b that returns only the group columns.
    if (star || aggItems.length > 0 || groupBy) throw syntax(toks[1].pos, 'SELECT DISTINCT takes plain columns, without aggregates or GROUP BY');
    const paths = items.map((i) => stripBase(i.path!));
    q = q.groupBy(...paths).aggregate({ [DISTINCT_COUNT]: { fn: 'count' } }) as never;
    q = new Query(host, { ...q.state, select: paths, groupNames: items.map((i, k) => i.alias ?? paths[k]) });
  } else if (aggItems.length > 0 || groupBy) {
    if (star) throw syntax(toks[1].pos, 'SELECT * cannot be combined with GROUP BY or aggregates');
    for (const i of items) {
      if (i.path && !(groupBy ?? []).includes(stripBase(i.path))) throw syntax(i.pos, `${i.path} must appear in GROUP BY or inside an aggregate`);
    }
    const aggs: Record<string, AggregateSpec> = {};
    const names: string[] = [];
    for (const i of items) {
      if (!i.agg) { names.push(stripBase(i.path!)); continue; }
      const name = aggName(i);
      aggs[name] = baseAgg(i.agg);
      names.push(name);
    }
    for (const h of hiddenAggs) aggs[h.name] = h.agg;
    q = (groupBy ? q.groupBy(...groupBy).aggregate(aggs) : q.aggregate(aggs)) as never;
    // The result holds the selected items, in their order, under their aliases.
    const groupNames = (groupBy ?? []).map((g) => items.find((i) => i.path && i.alias && stripBase(i.path) === g)?.alias ?? g);
    q = new Query(host, { ...q.state, select: names, groupNames, having: having ? [having] : [] });
  } else if (!star) {
    const paths = items.map((i) => stripBase(i.path!));
    q = new Query(host, { ...q.select(...paths).state, selectNames: items.map((i, k) => i.alias ?? paths[k]) });
  }
  for (const o of order) q = q.orderBy(o.path, o.desc ? 'desc' : 'asc');
  if (offset) q = q.offset(offset);
  if (Number.isFinite(limit)) q = q.limit(limit);
  return q;

  function fieldSpec(path: string): FieldSpec | undefined {
    const [head, ...rest] = path.split('.');
    const join = joins.find((j) => j.as === head);
    const fields = join ? join.model.fields : model.fields;
    let spec: FieldSpec | undefined = (join ? fields[rest[0]] : fields[head]);
    for (const part of join ? rest.slice(1) : rest) spec = spec?.kind === 'object' ? spec.shape![part] : undefined;
    return spec;
  }
  /** An aggregate's path without the queried collection's name or alias. */
  function baseAgg(agg: AggregateSpec): AggregateSpec {
    return { ...agg, path: agg.path ? stripBase(agg.path) : undefined };
  }
  /** The result key of an aggregate SELECT item: its alias, else fn_path (count for COUNT(*)). */
  function aggName(i: SelectItem): string {
    const spec = baseAgg(i.agg!);
    return i.alias ?? (spec.path ? `${spec.fn}_${spec.path.replace(/\./g, '_')}` : spec.fn);
  }
  /** A HAVING or aggregate ORDER BY operand: an aggregate call, a SELECT alias, or a group column. */
  function havingOperand(): string {
    const agg = aggCall();
    if (agg) {
      const spec = baseAgg(agg);
      const same = (a: AggregateSpec) => a.fn === spec.fn && (a.path ?? '') === (spec.path ?? '');
      const item = items.find((i) => i.agg && same(baseAgg(i.agg)));
      if (item) return aggName(item);
      const hidden = hiddenAggs.find((h) => same(h.agg));
      if (hidden) return hidden.name;
      const name = `${HIDDEN_AGG}${hiddenAggs.length}`;
      hiddenAggs.push({ name, agg: spec });
      return name;
    }
    const name = ident('a column or an aggregate');
    const aliased = items.find((i) => i.alias === name);
    if (aliased) return aliased.agg ? aggName(aliased) : stripBase(aliased.path!);
    return stripBase(name);
  }
  /** A result key named by AS: any identifier but `__proto__`, which no plain object can hold. */
  function resultName(): string {
    const t = peek();
    const name = ident('an alias');
    if (name === '__proto__') throw syntax(t.pos, '__proto__ cannot name a result column');
    return name;
  }
  function aliasAfter(): string | undefined {
    if (eatKw('AS')) return ident('an alias');
    const t = peek();
    if (t.kind === 'id' && !RESERVED.has(t.text.toUpperCase())) { p++; return t.text; }
    return undefined;
  }
  function stripBase(path: string): string {
    for (const prefix of [baseAlias, table]) if (prefix && path.startsWith(`${prefix}.`)) return path.slice(prefix.length + 1);
    return path;
  }
  function orExpr(depth: number): Expr {
    if (depth > MAX_DEPTH) throw syntax(peek().pos, 'expression nested too deeply');
    const items = [andExpr(depth)];
    while (eatKw('OR')) items.push(andExpr(depth));
    return items.length === 1 ? items[0] : { kind: 'or', items };
  }
  function andExpr(depth: number): Expr {
    const items = [notExpr(depth)];
    while (eatKw('AND')) items.push(notExpr(depth));
    return items.length === 1 ? items[0] : { kind: 'and', items };
  }
  function notExpr(depth: number): Expr {
    if (eatKw('NOT')) return { kind: 'not', item: notExpr(depth + 1) };
    if (eatSym('(')) {
      const e = orExpr(depth + 1);
      expectSym(')');
      return e;
    }
    const path = havingMode ? havingOperand() : stripBase(ident('a column'));
    const t = peek();
    if (eatKw('IS')) {
      const not = eatKw('NOT');
      expectKw('NULL');
      return { kind: 'cmp', path, op: not ? 'is not' : 'is', value: null };
    }
    const notIn = isKw('NOT') && isKw('IN', toks[p + 1]);
    if (notIn) p++;
    if (eatKw('IN')) {
      expectSym('(');
      const values: unknown[] = [];
      do values.push(param()); while (eatSym(','));
      expectSym(')');
      return { kind: 'cmp', path, op: notIn ? 'not in' : 'in', value: values };
    }
    const notBetween = isKw('NOT') && isKw('BETWEEN', toks[p + 1]);
    if (notBetween) p++;
    if (eatKw('BETWEEN')) {
      const lo = param();
      expectKw('AND');
      const hi = param();
      const between: Expr = { kind: 'and', items: [{ kind: 'cmp', path, op: '>=', value: lo }, { kind: 'cmp', path, op: '<=', value: hi }] };
      return notBetween ? { kind: 'not', item: between } : between;
    }
    if (eatKw('STARTSWITH')) return { kind: 'cmp', path, op: 'startsWith', value: param() };
    const notLike = isKw('NOT') && isKw('LIKE', toks[p + 1]);
    if (notLike) p++;
    if (eatKw('LIKE')) {
      const like = likePattern(param(), t.pos);
      return notLike ? { kind: 'not', item: { kind: 'cmp', path, ...like } } : { kind: 'cmp', path, ...like };
    }
    if (t.kind === 'sym' && ['=', '!=', '<', '<=', '>', '>='].includes(t.text)) {
      p++;
      return { kind: 'cmp', path, op: t.text as CmpOp, value: param() };
    }
    throw syntax(t.pos, `expected a comparison after ${path}${t.text ? `, found ${t.text}` : ''}`);
  }
}

/** Literal values of the command line, brought to the type of their field. */
function coerceLiterals(e: Expr, specOf: (path: string) => FieldSpec | undefined): Expr {
  if (e.kind === 'not') return { kind: 'not', item: coerceLiterals(e.item, specOf) };
  if (e.kind !== 'cmp') return { kind: e.kind, items: e.items.map((x) => coerceLiterals(x, specOf)) };
  const kind = specOf(e.path)?.kind;
  const one = (v: unknown): unknown => {
    if (!v || typeof v !== 'object' || !('literal' in v)) return v;
    const raw = (v as { literal: unknown }).literal;
    if (kind === 'timestamp' && (typeof raw === 'string' || typeof raw === 'number')) return new Date(raw);
    if (kind === 'bigint' && (typeof raw === 'number' || typeof raw === 'string')) {
      try { return BigInt(raw); } catch { return raw; }
    }
    if ((kind === 'int' || kind === 'float') && typeof raw === 'string' && raw.trim() !== '' && !Number.isNaN(Number(raw))) return Number(raw);
    return raw;
  };
  return { ...e, value: Array.isArray(e.value) ? e.value.map(one) : one(e.value) };
}

/** The hidden count of SELECT DISTINCT, and the prefix of aggregates computed only for HAVING. */
const DISTINCT_COUNT = 'distinct_rows__';
const HIDDEN_AGG = 'having_agg__';

/**
 * LIKE as a comparison: 'abc%' is startsWith('abc'), a pattern without wildcards is equality.
 * Other wildcards (% inside, _) are refused rather than matched wrongly. Case-sensitive.
 */
function likePattern(value: unknown, pos: number): { op: CmpOp; value: unknown } {
  const raw = value !== null && typeof value === 'object' && 'literal' in value ? (value as { literal: unknown }).literal : value;
  if (typeof raw !== 'string') throw new ModelVaultError('VALIDATION', 'LIKE needs a string pattern', { path: 'sql', position: pos });
  const prefix = raw.endsWith('%') ? raw.slice(0, -1) : raw;
  if (/[%_]/.test(prefix)) {
    throw new ModelVaultError('VALIDATION', `LIKE supports 'prefix%' and exact patterns only, not ${JSON.stringify(raw)} (use STARTSWITH or =)`, { path: 'sql', position: pos });
  }
  return raw.endsWith('%') ? { op: 'startsWith', value: prefix } : { op: '=', value: prefix };
}

function withPos(err: unknown, pos: number): unknown {
  if (err instanceof ModelVaultError) return new ModelVaultError(err.code, `${err.message} (at position ${pos})`, { ...err.details, position: pos });
  return err;
}

const RESERVED = new Set(['SELECT', 'FROM', 'WHERE', 'AND', 'OR', 'NOT', 'JOIN', 'INNER', 'LEFT', 'OUTER', 'ON', 'GROUP', 'BY', 'ORDER', 'ASC', 'DESC', 'LIMIT', 'OFFSET', 'AS', 'IS', 'NULL', 'IN', 'BETWEEN', 'DISTINCT', 'STARTSWITH', 'HAVING', 'LIKE']);
