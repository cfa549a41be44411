// The Ollama Modelfile written beside an exported GGUF file. Ollama formats chats with a Go template, not the
// Jinja chat template the GGUF carries: `ollama create` only recognises a GGUF's tokenizer.chat_template when it is
// close to one of its own built-in templates, and otherwise falls back to sending the bare prompt. So the chat
// format is translated here for the common shape (each message as a fixed prefix + content + suffix per role, a
// fixed start and generation prompt): the pieces are read off the Jinja template's own renders of a few probe
// conversations, and the translation is used only if those pieces rebuild every probe render exactly. Otherwise
// the Modelfile says so and leaves the template to Ollama.
import type { ChatMessage, ChatTemplate } from '../tokenizer/chat.js';

/** The chat format as fixed strings around each message. */
interface TurnFormat {
  start: string;
  system: [string, string];
  user: [string, string];
  assistant: [string, string];
  generation: string;
}

const S = 'SCALPELsysMARK';
const U1 = 'SCALPELuserONE';
const U2 = 'SCALPELuserTWO';
const A1 = 'SCALPELasstONE';

/** What lies around `marker` in `text` (null if the marker is not there exactly once). */
function around(text: string, marker: string): [string, string] | null {
  const i = text.indexOf(marker);
  if (i < 0 || text.indexOf(marker, i + 1) >= 0) return null;
  return [text.slice(0, i), text.slice(i + marker.length)];
}

function stripPrefix(text: string, prefix: string): string | null {
  return text.startsWith(prefix) ? text.slice(prefix.length) : null;
}

/** Renders `messages` the way the derived format would. */
function renderTurns(f: TurnFormat, messages: readonly ChatMessage[], generation: boolean): string {
  let out = f.start;
  for (const m of messages) {
    const [pre, post] = f[m.role as 'system' | 'user' | 'assistant'];
    out += pre + m.content + post;
  }
  return generation ? out + f.generation : out;
}

/** Reads the per-role pieces off the template's renders; null when the template is not of that shape. */
export function deriveTurnFormat(chat: ChatTemplate): TurnFormat | null {
  try {
    const r = (messages: ChatMessage[], gen: boolean) => chat.render(messages, { addGenerationPrompt: gen });
    const user1: ChatMessage = { role: 'user', content: U1 };
    const asst1: ChatMessage = { role: 'assistant', content: A1 };
    const user2: ChatMessage = { role: 'user', content: U2 };
    const sys: ChatMessage = { role: 'system', content: S };
    const d = r([user1], false);
    const generation = stripPrefix(r([user1], true), d);
    const e = r([user1, asst1], false);
    const f = r([user1, asst1, user2], false);
    const du = around(d, U1);
    const ea = around(stripPrefix(e, d) ?? '', A1);
    const fu = around(stripPrefix(f, e) ?? '', U2);
    if (generation === null || !du || !ea || !fu) return null;
    const userPre = fu[0];
    const start = du[0].endsWith(userPre) ? du[0].slice(0, du[0].length - userPre.length) : null;
    if (start === null) return null;
    const g = stripPrefix(r([sys, user1], false), start);
    const gs = g === null ? null : around(g, S);
    if (!gs) return null;
    const sysTail = gs[1].endsWith(d.slice(start.length))
      ? gs[1].slice(0, gs[1].length - (d.length - start.length))
      : null;
    if (sysTail === null) return null;
    const format: TurnFormat = {
      start,
      system: [gs[0], sysTail],
      user: [userPre, du[1]],
      assistant: ea,
      generation,
    };
    // The pieces must rebuild conversations they were not read from.
    const probes: ChatMessage[][] = [
      [sys, user1, asst1, user2],
      [user1, asst1, user2, { role: 'assistant', content: 'ok' }, { role: 'user', content: 'Hi there.' }],
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'What is 2+2?' },
      ],
    ];
    for (const p of probes) {
      if (r(p, true) !== renderTurns(format, p, true)) return null;
    }
    return format;
  } catch {
    return null; // templates that refuse a probe (e.g. no system role) are not of this shape
  }
}

/** A Go-template string literal (Ollama's templates are Go text/template). */
const goString = (s: string): string => `{{ ${JSON.stringify(s)} }}`;

/** The format as an Ollama TEMPLATE over .Messages. */
function goTemplate(f: TurnFormat): string {
  const role = (name: string, [pre, post]: [string, string]) =>
    `{{ if eq .Role "${name}" }}${goString(pre)}{{ .Content }}${goString(post)}{{ end }}`;
  return (
    `${goString(f.start)}{{ range .Messages }}` +
    role('system', f.system) +
    role('user', f.user) +
    role('assistant', f.assistant) +
    `{{ end }}${goString(f.generation)}`
  );
}

/** The Modelfile text: FROM the GGUF file, the chat TEMPLATE when it translates, stop tokens. */
export function ollamaModelfile(o: {
  ggufFile: string;
  modelName: string;
  chat: ChatTemplate | null;
  stopTokens: string[];
}): string {
  const lines = [
    `# Ollama Modelfile for ${o.ggufFile}, written by scalpel bake --format gguf (${o.modelName} with the run's`,
    '# direction removed from its weights). Use: ollama create NAME -f Modelfile && ollama run NAME',
    `FROM ./${o.ggufFile}`,
  ];
  const format = o.chat ? deriveTurnFormat(o.chat) : null;
  if (format) {
    lines.push(
      "# The model's chat template (tokenizer.chat_template in the GGUF), translated to Ollama's Go template.",
      `TEMPLATE """${goTemplate(format)}"""`,
    );
  } else if (o.chat) {
    lines.push(
      "# The chat template (tokenizer.chat_template in the GGUF) could not be translated to Ollama's Go template",
      '# here; Ollama uses it when it matches one of its built-in templates. Otherwise add a TEMPLATE line.',
    );
  } else {
    lines.push('# The model has no chat template: Ollama sends prompts as they are.');
  }
  for (const t of o.stopTokens) lines.push(`PARAMETER stop ${JSON.stringify(t)}`);
  return `${lines.join('\n')}\n`;
}
