// The page's entry: wires each section's controls, then shows the start state and offers any run to resume.
// The webpeft page: load a model, pick data and a method, train with a live
// chart, compare base and adapted outputs, export or checkpoint the adapter.
// Bundled by www/build.mjs (esbuild) with uPlot; the webpeft package itself is
// imported from /web/dist at run time so the page always uses the built package.
import { state } from "./state.js";
import { refreshButtons } from "./buttons.js";
import { wireModel, updateSourceFields } from "./model.js";
import { wireMethod, updateMethodFields } from "./method.js";
import { wireData, showEditors } from "./data.js";
import { wireExamples } from "./examples.js";
import { wireConversations } from "./conversations.js";
import { wireEstimate } from "./estimate.js";
import { wireTraining } from "./train.js";
import { resetChart } from "./chart.js";
import { wireCompare } from "./compare.js";
import { wireChat } from "./chat.js";
import { wireKeep } from "./keep.js";
import { wireProjects } from "./projects.js";
import { offerResume } from "./resume.js";

window.webpeftPage = state; // for debugging in the console

wireModel();
wireMethod();
wireCompare();
wireChat();
wireData();
wireExamples();
wireConversations();
wireEstimate();
wireTraining();
wireKeep();
wireProjects();

updateSourceFields();
updateMethodFields();
showEditors();
refreshButtons();
resetChart();
offerResume();
window.webpeftReady = true;
