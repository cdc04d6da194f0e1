import { describe, expect, it } from "vitest";
import { CONTAINER_BASE_INDEX, CONTAINER_BASE_OBJECTS, CONTAINER_WORKSPACE, slotLayout } from "./slot-layout.js";

describe("slotLayout", () => {
  it("puts the git directory and the tree's index beside the tree, never in it", () => {
    const l = slotLayout("/data/slots/slot_01");
    expect(l).toEqual({
      root: "/data/slots/slot_01",
      gitDir: "/data/slots/slot_01/git",
      tree: "/data/slots/slot_01/tree",
      indexDir: "/data/slots/slot_01/tree-index",
      index: "/data/slots/slot_01/tree-index/index",
    });
    for (const p of [l.gitDir, l.indexDir, l.index]) expect(p.startsWith(`${l.tree}/`), p).toBe(false);
  });

  it("normalizes the root it is given", () => {
    expect(slotLayout("/data/slots/slot_01/").tree).toBe("/data/slots/slot_01/tree");
    expect(slotLayout("/data//slots/./slot_01").gitDir).toBe("/data/slots/slot_01/git");
  });

  it("mounts the slot's objects and index outside the agent's workspace", () => {
    for (const p of [CONTAINER_BASE_OBJECTS, CONTAINER_BASE_INDEX]) expect(p.startsWith(`${CONTAINER_WORKSPACE}/`), p).toBe(false);
  });
});
