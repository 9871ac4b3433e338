// A TypeScript user of the packed package (tests/web/types.test.mjs type-checks it with
// `tsc --noEmit` under moduleResolution bundler, node16 and nodenext, with skipLibCheck off).
// Every type here must come through: an `any` (an import the resolution could not follow)
// fails the `NotAny` checks.
import { Tuner, WebPeftError } from "webpeft";
import type { ErrorKind, MemoryPlan, ModelInfo, TrainEvent, TrainOptions, TrainSummary, Classification, DataValidation } from "webpeft";

type NotAny<T> = 0 extends 1 & T ? never : T;
const notAny = <T>(v: NotAny<T>): T => v;

const options: TrainOptions = { task: "causal-lm", method: "lora", r: 8, seqLen: 64, gradAccum: 2, schedule: "cosine", dp: { targetEpsilon: 8 } };
// The package's casing is camelCase: the core's snake_case names are not options.
// @ts-expect-error seq_len is spelled seqLen
const snake: TrainOptions = { task: "causal-lm", method: "lora", seq_len: 64 };
// @ts-expect-error not a method
const wrong: TrainOptions = { task: "causal-lm", method: "lorax" };

export async function main(signal: AbortSignal): Promise<string> {
  const tuner = notAny(await Tuner.load({ urls: ["/model/config.json"] }, { backend: "cpu", signal }));
  const info: ModelInfo = notAny(tuner.info);
  const params: number = notAny(info.numParameters);
  const chat: boolean = info.hasChatTemplate;
  const run = tuner.train([{ text: "hello" }], options);
  for await (const e of run.events) {
    const event: TrainEvent = notAny(e);
    if (event.event === "step") console.log(event.gradNorm, event.tokensPerS, event.etaS, event.totalSteps);
    if (event.event === "eval") console.log(event.metrics.macroF1, event.metrics.perplexity);
    if (event.event === "start") console.log(event.trainableParameters, event.adapter);
  }
  const summary: TrainSummary = notAny(await run.done);
  const plan: MemoryPlan = notAny(await Tuner.plan({ hub: "owner/name" }, options));
  const biggest: number[] | undefined = plan.training?.largestActivation.shape;
  const classes: Classification[] = notAny(await tuner.classify(["a text"]));
  const checked: DataValidation = notAny(await Tuner.validateData("a,b\n", { task: "seq-cls", seqLen: 64, dataFormat: "csv" }));
  const tokens = notAny(await tuner.validateData([{ text: "hello" }])).tokens;
  const line: number | null = notAny(checked.problems[0]!.line);
  // @ts-expect-error validateData's options are camelCase too
  await Tuner.validateData("hello", { seq_len: 64 });
  try {
    await tuner.generate("Hi", { maxNewTokens: 4, signal });
  } catch (e) {
    if (e instanceof WebPeftError) {
      const kind: ErrorKind = notAny(e.kind);
      return kind;
    }
  }
  return `${params} ${chat} ${summary.elapsedS} ${plan.hostPeakBytes} ${biggest} ${classes[0]?.probs["x"]} ${snake.task} ${wrong.task} ${checked.labels?.[0]?.count} ${tokens?.seqLen} ${line}`;
}
